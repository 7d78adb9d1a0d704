"""The ``csv`` source: a file or a glob of files with a timestamp column.

Columns are mapped to dimension labels and measures. Rows with a missing
column, a non-numeric or negative count are rejected with a message naming the
file, row and field; when any row is rejected and ``strict`` is set, the whole
poll is refused (stored data is never touched by a refused poll).
"""

from __future__ import annotations

import glob
import logging
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field, field_validator

from monitor.errors import SourceError
from monitor.sources.base import TS, TS_DTYPE, SourceConfig

log = logging.getLogger(__name__)


class CsvConfig(SourceConfig):
    type: Literal["csv"] = "csv"
    path: str = Field(description="A file or a glob; relative paths are resolved "
                                  "against the config file's folder.")
    timestamp: str = Field(default="date", description="The column holding the period start.")
    timestamp_format: str | None = Field(default=None, description="strftime format; "
                                         "ISO 8601 when omitted.")
    timezone: str | None = Field(default=None, description="Zone of naive timestamps; "
                                 "defaults to global.timezone.")
    dimensions: dict[str, str] | list[str] = Field(default_factory=list)
    measures: dict[str, str] | list[str]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    strict: bool = False

    @field_validator("dimensions", "measures")
    @classmethod
    def _as_mapping(cls, v: dict[str, str] | list[str]) -> dict[str, str]:
        """``[a, b]`` is shorthand for ``{a: a, b: b}`` (label or measure name: column)."""
        return {name: name for name in v} if isinstance(v, list) else dict(v)


class CsvSource:
    config_model: ClassVar[type[SourceConfig]] = CsvConfig

    def __init__(self, config: CsvConfig, *, timezone: str, base_dir: Path | None = None):
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

    def files(self) -> list[str]:
        pattern = self.config.path
        if not Path(pattern).is_absolute():
            pattern = str(self.base_dir / pattern)
        return sorted(glob.glob(pattern))

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        files = self.files()
        if not files:
            raise SourceError(f"source {self.name!r}: no file matches {self.config.path!r}")
        frames, rejected = [], 0
        for file in files:
            frame, bad = self._read(file)
            frames.append(frame)
            rejected += bad
        self.rejected = rejected
        out = pl.concat(frames, how="vertical")
        return out.filter((pl.col(TS) >= start) & (pl.col(TS) < end))

    def _read(self, file: str) -> tuple[pl.DataFrame, int]:
        cfg = self.config
        try:
            raw = pl.read_csv(file, separator=cfg.delimiter, infer_schema=False)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise SourceError(f"source {self.name!r}: cannot read {file}: {exc}") from None
        wanted = [cfg.timestamp, *cfg.dimensions.values(), *cfg.measures.values()]
        missing = [c for c in wanted if c not in raw.columns]
        if missing:
            raise SourceError(f"source {self.name!r}: {file}: missing column(s) "
                              f"{', '.join(missing)}; found {', '.join(raw.columns)}")
        raw = raw.with_row_index("_row", offset=2)  # line 1 is the header
        parsed = raw.select(
            "_row",
            self._timestamp(pl.col(cfg.timestamp)).alias(TS),
            *(pl.col(col).alias(label) for label, col in cfg.dimensions.items()),
            *(pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).alias(m)
              for m, col in cfg.measures.items()),
        )
        problems = self._problems(raw, parsed)
        bad_rows = problems.select("_row").unique()
        if problems.height:
            sample = "; ".join(problems.head(3)["problem"].to_list())
            message = (f"source {self.name!r}: {file}: {bad_rows.height} row(s) rejected: "
                       f"{sample}")
            if cfg.strict:
                raise SourceError(message)
            log.warning("%s", message)
        good = parsed.join(bad_rows, on="_row", how="anti").drop("_row")
        return good, bad_rows.height

    def _timestamp(self, col: pl.Expr) -> pl.Expr:
        fmt = self.config.timestamp_format
        parsed = col.str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
        return (parsed.dt.replace_time_zone(self.tz, ambiguous="earliest",
                                            non_existent="null")
                .dt.convert_time_zone("UTC").cast(TS_DTYPE))

    def _problems(self, raw: pl.DataFrame, parsed: pl.DataFrame) -> pl.DataFrame:
        """One row per (row, field) problem, with a message naming both."""
        cfg = self.config
        checks = [(pl.col(TS).is_null(), cfg.timestamp, "not a timestamp")]
        for m, col in cfg.measures.items():
            checks.append((pl.col(m).is_null() & pl.col(f"raw_{m}").is_not_null(), col,
                           "not a number"))
            checks.append((pl.col(m).is_nan() | pl.col(m).is_infinite(), col, "not finite"))
            checks.append((pl.col(m) < 0, col, "negative count"))
        frame = parsed.with_columns(
            *(raw[col].alias(f"raw_{m}") for m, col in cfg.measures.items()),
            raw[cfg.timestamp].alias("raw_ts"),
        )
        parts = []
        for cond, field, what in checks:
            source = "raw_ts" if field == cfg.timestamp else f"raw_{_measure_for(cfg, field)}"
            parts.append(frame.filter(cond.fill_null(False)).select(
                "_row",
                pl.format("row {} field '{}': {} ({})", "_row", pl.lit(field), pl.lit(what),
                          pl.col(source).fill_null("empty")).alias("problem"),
            ))
        return pl.concat(parts).sort("_row")


def _measure_for(cfg: CsvConfig, column: str) -> str:
    return next(m for m, c in cfg.measures.items() if c == column)
