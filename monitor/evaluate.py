"""The rule engine: every rule over every series as vectorized polars expressions.

For each rule the window's rows inside the rule's time range are grouped by its
``by`` labels and every measure is summed; KPIs are then formulas over those
sums (ratio of sums), and the condition is one boolean expression over the
grouped frame. Rules that share a time range and grouping share one aggregation.
``now`` is a parameter: the daemon, ``eval`` and the tests run the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from monitor.durations import format_duration
from monitor.kpis import Catalog
from monitor.rulefile import Rule
from monitor.sources.base import TS, label_key

log = logging.getLogger(__name__)

DAY, HOUR = timedelta(days=1), timedelta(hours=1)

CANDIDATE_SCHEMA = {
    "rule": pl.String, "series": pl.String, "value": pl.Float64, "active": pl.Boolean,
    "sufficient": pl.Boolean, "kpi_values": pl.String,
}
KPI_SCHEMA = {"rule": pl.String, "window": pl.String, "kpi": pl.String, "series": pl.String,
              "value": pl.Float64}


def window_range(now: datetime, over: timedelta, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The trailing window of complete periods that ends before ``now``.

    Whole days end at local midnight in ``tz`` and count calendar days, so a
    window across a DST change still holds exactly N local days; whole hours end
    at the last full hour; anything else is a plain sliding window.
    """
    if over >= DAY and over % DAY == timedelta(0):
        local = now.astimezone(tz)
        end = datetime.combine(local.date(), datetime.min.time(), tz)
        start = datetime.combine(local.date() - timedelta(days=over // DAY),
                                 datetime.min.time(), tz)
        return start.astimezone(UTC), end.astimezone(UTC)
    if over % HOUR == timedelta(0):
        end = now.replace(minute=0, second=0, microsecond=0)
        return end - over, end
    return now - over, now


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating some rules at one instant."""

    at: datetime
    candidates: pl.DataFrame  # one row per (rule, series): value, active, sufficient
    kpis: pl.DataFrame  # one row per (rule, kpi, series): the KPI values, for export
    errors: dict[str, str] = field(default_factory=dict)  # rule -> why it failed
    durations: dict[str, float] = field(default_factory=dict)


def evaluate(rules: Sequence[Rule], frame: pl.DataFrame, now: datetime, tz: ZoneInfo,
             catalog: Catalog) -> Evaluation:
    aggregates: dict[tuple, pl.DataFrame] = {}
    candidates, kpis, errors = [], [], {}
    for rule in rules:
        try:
            start, end = window_range(now, rule.spec.over, tz)
            key = (start, end, rule.by)
            if key not in aggregates:
                needed = set().union(*(r.measures for r in rules if r.by == rule.by))
                aggregates[key] = aggregate(frame, start, end, rule.by, needed)
            cand, kpi = _apply(rule, aggregates[key], catalog)
            candidates.append(cand)
            kpis.append(kpi)
        except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
            log.error("rule %s failed: %s", rule.name, exc)
            errors[rule.name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return Evaluation(
        at=now,
        candidates=pl.concat(candidates) if candidates else pl.DataFrame(
            schema=CANDIDATE_SCHEMA),
        kpis=pl.concat(kpis) if kpis else pl.DataFrame(schema=KPI_SCHEMA),
        errors=errors,
    )


def aggregate(frame: pl.DataFrame, start: datetime, end: datetime, by: tuple[str, ...],
              measures: set[str]) -> pl.DataFrame:
    """Sum every measure per ``by`` group over [start, end); rows missing a label are left out."""
    present = [m for m in sorted(measures) if m in frame.columns]
    absent = [m for m in sorted(measures) if m not in frame.columns]
    missing_labels = [b for b in by if b not in frame.columns]
    if missing_labels:
        return pl.DataFrame(schema={**dict.fromkeys(by, pl.String),
                                    **dict.fromkeys(measures, pl.Float64)})
    lf = frame.lazy().filter((pl.col(TS) >= start) & (pl.col(TS) < end))
    if by:
        lf = lf.drop_nulls(list(by)).group_by(list(by)).agg(pl.col(present).sum())
    else:
        lf = lf.select(pl.col(present).sum())
    return lf.with_columns(pl.lit(None, pl.Float64).alias(m) for m in absent).collect()


def _apply(rule: Rule, agg: pl.DataFrame, catalog: Catalog) -> tuple[pl.DataFrame, pl.DataFrame]:
    sufficient = pl.lit(True)
    for measure, minimum in rule.spec.min_volume.items():
        sufficient = sufficient & (pl.col(measure).fill_null(0) >= minimum)
    kpi_cols = [catalog.column(k).alias(k) for k in rule.kpis]
    out = agg.select(
        pl.lit(rule.name).alias("rule"),
        label_key(list(rule.by)).alias("series"),
        rule.value.cast(pl.Float64).alias("value"),
        rule.condition.fill_null(False).alias("active"),
        sufficient.alias("sufficient"),
        *kpi_cols,
    )
    kpi_values = (pl.struct(list(rule.kpis)).struct.json_encode()
                  if rule.kpis else pl.lit("{}"))
    candidates = out.with_columns(kpi_values.alias("kpi_values")).select(list(CANDIDATE_SCHEMA))
    window = format_duration(rule.spec.over)
    long = (out.select("rule", "series", *rule.kpis)
            .unpivot(index=["rule", "series"], on=list(rule.kpis), variable_name="kpi",
                     value_name="value")
            if rule.kpis else pl.DataFrame(schema=KPI_SCHEMA))
    long = long.with_columns(pl.lit(window).alias("window"), pl.col("value").cast(pl.Float64))
    return candidates, long.select(list(KPI_SCHEMA))
