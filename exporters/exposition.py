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
CACHED = " Cached: computed by the last evaluation, not at scrape time."
# family -> (metric name, the label naming the number, HELP)
FAMILIES = {
    "kpi": ("kpimon_kpi_value", "kpi", "KPI value per series: a ratio of sums over the "
            "window (ratios as 0-1, money in global.currency)."),
    "measure": ("kpimon_measure_value", "measure", "Raw measure summed over the window per "
                "series: both parts of every ratio, for re-aggregation in PromQL."),
    "threshold": ("kpimon_rule_threshold", "rule", "What each rule series' value is "
                  "compared with (a target, or a multiple of a baseline), for target lines "
                  "and normal bands on boards."),
}


@dataclass(frozen=True)
class Limits:
    per_rule: int = 100_000
    total: int = 1_000_000


@dataclass(frozen=True)
class Payload:
    plain: bytes
    gzipped: bytes
    series: int  # exported samples of the vectorized families


def kpi_samples(kpis: pl.DataFrame, limits: Limits) -> tuple[pl.DataFrame, dict[str, int]]:
    """Deduplicated KPI samples within the limits, and how many were dropped per rule."""
    rows = kpis.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
    # One rule's tiers (and rules sharing a window and grouping) report the same KPI;
    # a threshold belongs to its rule.
    rows = rows.with_columns(pl.when(pl.col("family") == "threshold").then(pl.col("rule"))
                             .otherwise(pl.col("kpi")).alias("kpi"))
    rows = rows.unique(["family", "kpi", "window", "labels"], keep="first",
                       maintain_order=True)
    # The caps count series (label sets), not samples: a series keeps all its numbers.
    ranked = rows.with_columns(pl.col("labels").rank("dense").over("rule").alias("$n"))
    kept = ranked.filter(pl.col("$n") <= limits.per_rule)
    series = kept.select("rule", "labels").unique(maintain_order=True).head(limits.total)
    kept = kept.join(series, on=["rule", "labels"], how="semi")
    before = ranked.group_by("rule").agg(pl.col("labels").n_unique().alias("all"))
    after = kept.group_by("rule").agg(pl.col("labels").n_unique().alias("kept"))
    dropped = (before.join(after, on="rule", how="left")
               .select("rule", (pl.col("all") - pl.col("kept").fill_null(0)).alias("n"))
               .filter(pl.col("n") > 0))
    return kept.drop("$n"), dict(dropped.iter_rows())


def kpi_text(samples: pl.DataFrame) -> str:
    """The text of the three vectorized families, HELP and TYPE included."""
    out = []
    for family, (name, label, text) in FAMILIES.items():
        rows = samples.filter(pl.col("family") == family)
        out.append(f"# HELP {name} {text}{CACHED}\n# TYPE {name} gauge\n")
        if rows.height == 0:
            continue
        lines = rows.select(pl.format(
            name + "{{" + label + '="{}",window="{}"{}}} {}', "kpi", "window",
            pl.when(pl.col("labels") != "").then(pl.lit(",") + pl.col("labels"))
            .otherwise(pl.lit("")), pl.col("value").cast(pl.String)))
        out.append("\n".join(lines.to_series().to_list()) + "\n")
    return "".join(out)


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
        text = kpi_text(samples)
        plain = text.encode() + generate_latest(self.registry)
        payload = Payload(plain, gzip.compress(plain, compresslevel=3), samples.height)
        with self._lock:
            self._payload = payload
        return payload
