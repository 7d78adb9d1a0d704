"""Rows to observations: the mapping and validation every tabular source shares.

A source (csv, jsonl, sql, http_json) reads its records into a *raw* frame: one
column per mapped field, as strings or as whatever type the driver gave, plus a
``_row`` column naming where each record came from (a line number, a record
index). ``parse_records`` turns it into an observation frame in one vectorized
pass and lists every problem by row and field: timestamps that do not parse or
carry no time zone, numbers that do not parse (Russian exports write "1 234,5"),
NaN, infinities, negative counts and duplicate keys. Bad rows are rejected and
counted, or the whole poll is refused when the source is ``strict``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field, field_validator

from monitor.errors import SourceError
from monitor.sources.base import TS, TS_DTYPE, SourceConfig

log = logging.getLogger(__name__)
ROW = "_row"
# Spaces that exports put between thousands: space, no-break space, narrow no-break space.
SPACES = r"[\s\u00a0\u202f\u2009']"
AWARE = r"(?:Z|[+-]\d{2}:?\d{2})$"
HAS_TIME = r"\d[T ]\d{1,2}:\d{2}"


class TabularConfig(SourceConfig):
    """Column mapping and number/time formats shared by the record-reading sources."""

    timestamp: str = Field(default="date", description="The field holding the period start.")
    timestamp_format: str | None = Field(
        default=None, description="strftime format such as '%d.%m.%Y', or 'epoch' / "
        "'epoch_ms' for Unix time; ISO 8601 when omitted.")
    timezone: str | None = Field(
        default=None, description="Zone of timestamps written without an offset. Dates alone "
        "are days in global.timezone; a date-time without an offset needs this set.")
    dimensions: dict[str, str] | list[str] = Field(
        default_factory=list, description="Label name: field, or a list of fields.")
    measures: dict[str, str] | list[str] = Field(
        description="Measure name: field, or a list of fields; additive counts and sums.")
    decimal: Literal[".", ","] = Field(default=".", description="Decimal mark of numbers "
                                       "written as text; ',' for Russian exports.")
    thousands: str = Field(default="", max_length=1, description="Thousands separator besides "
                           "spaces (which are always ignored), e.g. '.' with decimal ','.")
    duplicates: Literal["reject", "sum", "last"] = Field(
        default="reject", description="Rows with the same timestamp and labels in one poll: "
        "reject them, add them up, or keep the last one.")
    strict: bool = Field(default=False, description="Refuse the whole poll when any row "
                         "is bad, instead of rejecting the bad rows.")

    @field_validator("dimensions", "measures")
    @classmethod
    def _as_mapping(cls, v: dict[str, str] | list[str]) -> dict[str, str]:
        """``[a, b]`` is shorthand for ``{a: a, b: b}``."""
        return {name: name for name in v} if isinstance(v, list) else dict(v)

    def fields(self) -> list[str]:
        """Every field the mapping reads, timestamp first."""
        return list(dict.fromkeys([self.timestamp, *self.dimensions.values(),
                                   *self.measures.values()]))


class TabularSource:
    """What the record-reading sources share: their mapping, zone and reject count."""

    def __init__(self, config: TabularConfig, *, timezone: str, base_dir: Path | None = None):
        self.config = config
        self.name = config.name
        self.tz = config.timezone or timezone
        self.base_dir = base_dir or Path.cwd()
        self.rejected = 0  # rows rejected by the last poll

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.config.dimensions)

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(self.config.measures)


@dataclass(frozen=True)
class Parsed:
    frame: pl.DataFrame  # the observation frame of the good rows
    rejected: int  # rows rejected
    problems: list[str]  # "row N field 'f': what (value)", a few first ones


def parse_records(raw: pl.DataFrame, cfg: TabularConfig, tz: str) -> Parsed:
    """Map, parse and validate ``raw`` (mapped fields + ``_row``); see the module doc."""
    ts, kinds = _timestamp(raw[cfg.timestamp], cfg, tz)
    parsed = pl.DataFrame([raw[ROW], ts.alias(TS)]).with_columns(
        *(raw[col].cast(pl.String).alias(label) for label, col in cfg.dimensions.items()),
        *(_number(raw[col], cfg).alias(m) for m, col in cfg.measures.items()),
    )
    checks: list[tuple[pl.Series, str, str]] = [
        (kinds == "naive", cfg.timestamp, "timestamp without a time zone (set the source's "
                                          "timezone)"),
        (parsed[TS].is_null() & (kinds != "naive"), cfg.timestamp, "not a timestamp"),
    ]
    for m, col in cfg.measures.items():
        value = parsed[m]
        checks += [
            (value.is_null() & _present(raw[col]), col, "not a number"),
            (value.is_nan() | value.is_infinite(), col, "not finite"),
            (value < 0, col, "negative count"),
        ]
    keys = [TS, *cfg.dimensions]
    if cfg.duplicates == "reject":
        checks.append((parsed.select(pl.struct(keys).is_duplicated()).to_series()
                       & parsed[TS].is_not_null(), cfg.timestamp,
                       "duplicate key: another row has the same timestamp and labels"))
    parts = []
    for mask, field, what in checks:
        bad = mask.fill_null(False)
        if bad.any():  # the raw text is only made for the few bad rows
            parts.append(pl.DataFrame({ROW: parsed[ROW].filter(bad),
                                       "value": raw[field].filter(bad).cast(pl.String)})
                         .select(ROW, pl.format("row {} field '{}': {} ({})", ROW,
                                                pl.lit(field), pl.lit(what),
                                                pl.col("value").fill_null("empty"))
                                 .alias("problem")))
    problems = (pl.concat(parts).sort(ROW, maintain_order=True) if parts
                else pl.DataFrame(schema={ROW: parsed[ROW].dtype, "problem": pl.String}))
    bad_rows = problems[ROW].unique()
    good = parsed.filter(~pl.col(ROW).is_in(bad_rows.implode())).drop(ROW)
    if cfg.duplicates == "sum":
        good = good.group_by(keys, maintain_order=True).agg(pl.col(list(cfg.measures)).sum())
    elif cfg.duplicates == "last":
        good = good.unique(keys, keep="last", maintain_order=True)
    return Parsed(good, bad_rows.len(), problems["problem"].head(5).to_list())


def report(parsed: Parsed, source: str, where: str, strict: bool) -> None:
    """Log rejected rows with a sample, or refuse the poll when the source is strict."""
    if not parsed.rejected:
        return
    message = (f"source {source!r}: {where}: {parsed.rejected} row(s) rejected: "
               + "; ".join(parsed.problems[:3]))
    if strict:
        raise SourceError(message, kind="rejected")
    log.warning("%s", message)


def require_fields(columns: list[str], cfg: TabularConfig, source: str, where: str) -> None:
    missing = [f for f in cfg.fields() if f not in columns]
    if missing:
        raise SourceError(f"source {source!r}: {where}: missing field(s) {', '.join(missing)}; "
                          f"found {', '.join(columns) or 'none'}", kind="parse")


def _present(raw: pl.Series) -> pl.Series:
    """True where the raw value is something (not null, not an empty string)."""
    if raw.dtype == pl.String:
        return raw.str.strip_chars().str.len_chars().fill_null(0) > 0
    return raw.is_not_null()


def _number(raw: pl.Series, cfg: TabularConfig) -> pl.Series:
    if raw.dtype.is_numeric() or raw.dtype == pl.Boolean:
        return raw.cast(pl.Float64)
    if isinstance(raw.dtype, pl.Decimal):
        return raw.cast(pl.Float64)
    text = raw.cast(pl.String).str.replace_all(SPACES, "")
    if cfg.thousands:
        text = text.str.replace_all(cfg.thousands, "", literal=True)
    if cfg.decimal == ",":
        text = text.str.replace(",", ".", literal=True)
    return text.cast(pl.Float64, strict=False)


def _timestamp(raw: pl.Series, cfg: TabularConfig, tz: str) -> tuple[pl.Series, pl.Series]:
    """UTC instants, and per row "aware" / "local" / "naive" (naive = rejected)."""
    n = raw.len()
    fmt = cfg.timestamp_format
    explicit_tz = cfg.timezone is not None
    kind = pl.Series(["local"] * n, dtype=pl.String)
    dtype = raw.dtype
    if fmt in ("epoch", "epoch_ms"):
        number = _number(raw, cfg).cast(pl.Int64, strict=False)
        unit = "s" if fmt == "epoch" else "ms"
        return (pl.from_epoch(number, unit).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
                pl.Series(["aware"] * n, dtype=pl.String))
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return (raw.dt.convert_time_zone("UTC").cast(TS_DTYPE),
                pl.Series(["aware"] * n, dtype=pl.String))
    if dtype == pl.Date:
        local = raw.cast(pl.Datetime("us"))
    elif isinstance(dtype, pl.Datetime):
        local = raw.cast(pl.Datetime("us"))
        if not explicit_tz:  # a bare date-time from a driver: midnight is a day, else ambiguous
            with_time = (local.dt.time() != pl.time(0)).fill_null(False)
            kind = kind.set(with_time, "naive")
    else:
        text = raw.cast(pl.String).str.strip_chars()
        aware = text.str.contains(AWARE).fill_null(False)
        local = text.str.to_datetime(fmt, strict=False, time_unit="us")
        if aware.any():
            instants = text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
            kind = kind.set(aware, "aware")
        else:
            instants = None
        if not explicit_tz:
            with_time = text.str.contains(HAS_TIME).fill_null(False) & ~aware
            kind = kind.set(with_time, "naive")
        localized = _localize(local, tz)
        if instants is not None:
            localized = pl.select(pl.when(aware).then(instants).otherwise(localized)).to_series()
        return localized.set(kind == "naive", None), kind
    localized = _localize(local, tz)
    return localized.set(kind == "naive", None), kind


def _localize(local: pl.Series, tz: str) -> pl.Series:
    return (local.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC").cast(TS_DTYPE))


def strings(values: list) -> pl.Series:
    """A column from driver values of possibly mixed types: one type stays, mixed become text."""
    types = {type(v) for v in values if v is not None}
    if len(types) <= 1:
        try:
            return pl.Series(values, strict=True)
        except (TypeError, pl.exceptions.PolarsError):
            pass
    return pl.Series([None if v is None else str(v) for v in values], dtype=pl.String)
