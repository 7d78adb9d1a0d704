"""The /metrics payload, built once per evaluation cycle and served as bytes.

KPI series can number in the hundreds of thousands, so their text lines are
rendered column-wise by polars (one string expression for all rows) instead of
one Python call per sample; the small families (sources, rules, alerts, the
daemon's counters) come from prometheus_client's own renderer. The result is
kept as plain and gzip bytes: a scrape costs the same whatever the rules do and
never waits for, or triggers, a poll or an evaluation.

A cardinality guard caps the series per rule and in total. Going over is logged
and counted in ``kpimon_exporter_series_dropped``; a rule over its cap keeps
its first series (by label order) rather than losing all of them.
"""

from __future__ import annotations

import gzip
import logging
import threading
from dataclasses import dataclass

import polars as pl
from prometheus_client import CollectorRegistry, generate_latest

log = logging.getLogger("kpimon.exporter")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KPI_HELP = ("# HELP kpimon_kpi_value KPI value per series: a ratio of sums over the window "
            "(ratios as 0-1, money in global.currency). Cached: computed by the last "
            "evaluation, not at scrape time.\n# TYPE kpimon_kpi_value gauge\n")


@dataclass(frozen=True)
class Limits:
    per_rule: int = 100_000
    total: int = 1_000_000


@dataclass(frozen=True)
class Payload:
    plain: bytes
    gzipped: bytes
    series: int


def kpi_samples(kpis: pl.DataFrame, limits: Limits) -> tuple[pl.DataFrame, dict[str, int]]:
    """Deduplicated KPI samples within the limits, and how many were dropped per rule."""
    rows = kpis.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
    # One rule's tiers (and rules sharing a window and grouping) report the same KPI.
    rows = rows.unique(["kpi", "window", "labels"], keep="first", maintain_order=True)
    ranked = rows.with_columns(pl.int_range(pl.len()).over("rule").alias("$n"))
    kept = ranked.filter(pl.col("$n") < limits.per_rule).head(limits.total)
    dropped = (ranked.join(kept.select("rule", "$n"), on=["rule", "$n"], how="anti")
               .group_by("rule").len())
    return kept.drop("$n"), dict(dropped.iter_rows())


def kpi_text(samples: pl.DataFrame) -> str:
    if samples.height == 0:
        return ""
    lines = samples.select(pl.format(
        'kpimon_kpi_value{{kpi="{}",window="{}"{}}} {}', "kpi", "window",
        pl.when(pl.col("labels") != "").then(pl.lit(",") + pl.col("labels")).otherwise(
            pl.lit("")),
        pl.col("value").cast(pl.String)))
    return "\n".join(lines.to_series().to_list()) + "\n"


class Exposition:
    """Holds the latest payload; ``rebuild`` is called by the daemon, never by a scrape."""

    def __init__(self, registry: CollectorRegistry, limits: Limits = Limits()):
        self.registry, self.limits = registry, limits
        self._payload = Payload(b"", gzip.compress(b""), 0)
        self._lock = threading.Lock()
        self.dropped: dict[str, int] = {}

    @property
    def payload(self) -> Payload:
        return self._payload

    def rebuild(self, kpis: pl.DataFrame) -> Payload:
        samples, dropped = kpi_samples(kpis, self.limits)
        if dropped:
            log.warning("cardinality limit: %d KPI series not exported (%s)",
                        sum(dropped.values()), ", ".join(f"{r}: {n}" for r, n in
                                                         sorted(dropped.items())))
        self.dropped = dropped
        text = KPI_HELP + kpi_text(samples)
        plain = text.encode() + generate_latest(self.registry)
        payload = Payload(plain, gzip.compress(plain, compresslevel=3), samples.height)
        with self._lock:
            self._payload = payload
        return payload
