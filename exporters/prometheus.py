"""Prometheus metrics of alert state and kpimon's own health (KPIs: exposition.py).

A custom collector reads the daemon's latest immutable values when the
exposition is built, once per cycle; the values are the ones computed by the
last evaluation, which HELP says. Everything lives in an injected registry,
never the global one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.alerts import AlertState
from monitor.health import with_builtin_rules

CACHED = " Cached: computed by the last evaluation, not at scrape time."


@dataclass(frozen=True)
class Views:
    """Callables the collector reads; each returns an immutable value."""

    live: Callable[[], object]  # -> monitor.cycle.LiveState
    runtime: Callable[[], object]  # -> monitor.runtime.Runtime
    outbox_counts: Callable[[], dict[str, int]]
    dropped: Callable[[], dict[str, int]] = dict  # rule -> KPI series over the limits
    silences: Callable[[], list] = list  # -> [monitor.silences.Silence]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


ERROR_KINDS = ("read", "connect", "timeout", "http", "auth", "query", "parse", "rejected",
               "store", "internal")


class KpimonCollector(Collector):
    def __init__(self, views: Views):
        self.views = views

    def describe(self) -> list[Metric]:
        # Registering must not call collect(): that would read the store at import time.
        return []

    def collect(self) -> Iterator[Metric]:
        live, runtime = self.views.live(), self.views.runtime()
        yield from self._alerts(live, runtime)
        yield from self._sources(live)
        yield from self._rules(live, runtime)
        yield from self._goals(live)
        outbox = GaugeMetricFamily("kpimon_outbox_messages",
                                   "Notification messages in the outbox by status.",
                                   labels=["status"])
        counts = self.views.outbox_counts()
        for status in ("pending", "sent", "dead"):
            outbox.add_metric([status], counts.get(status, 0))
        yield outbox
        failures = CounterMetricFamily("kpimon_template_failures", "Notifications whose "
                                       "template failed at send time and went out as the "
                                       "plain built-in message (since the last reload).")
        failures.add_metric([], getattr(runtime.renderer, "failures", 0))
        yield failures
        silenced = GaugeMetricFamily("kpimon_silences", "Silences by state (config and ad "
                                     "hoc).", labels=["state"])
        states = [s.state(self.views.now()) for s in self.views.silences()]
        for state in ("active", "pending", "expired"):
            silenced.add_metric([state], states.count(state))
        yield silenced
        dropped = GaugeMetricFamily("kpimon_exporter_series_dropped", "KPI series not "
                                    "exported by the last build because of the cardinality "
                                    "limits (server.max_series_per_rule, server.max_series).",
                                    labels=["rule"])
        for rule, n in sorted(self.views.dropped().items()):
            dropped.add_metric([rule], n)
        yield dropped
        info = InfoMetricFamily("kpimon_build", "kpimon version.")
        info.add_metric([], {"version": __version__})
        yield info

    def _alerts(self, live, runtime) -> Iterator[Metric]:
        active = Metric("kpimon_alerts", "Pending and firing alerts, like Prometheus' ALERTS."
                        + CACHED, "gauge")
        since = Metric("kpimon_alerts_active_since_timestamp_seconds",
                       "When each pending or firing alert became active." + CACHED, "gauge")
        rules = {r.id: r for r in with_builtin_rules(runtime.rules).rules}
        rows = live.alert_state.filter(
            live.alert_state["state"].is_in([AlertState.PENDING, AlertState.FIRING]))
        for rule, series, state, active_at in rows.select(
                "rule", "series", "state", "active_at").iter_rows():
            if rule not in rules:
                continue  # a rule removed by a reload; its state ages out
            static = rules[rule].labels
            labels = {**{k: v for k, v in static.items() if "{" not in v},
                      **json.loads(series), "alertname": rules[rule].name}
            active.add_sample("kpimon_alerts", {**labels, "alertstate": state}, 1)
            since.add_sample("kpimon_alerts_active_since_timestamp_seconds", labels,
                             (active_at or 0) / 1e6)
        yield active
        yield since

    def _sources(self, live) -> Iterator[Metric]:
        fams = {
            "up": GaugeMetricFamily("kpimon_source_up", "1 if the last poll of the source "
                                    "succeeded.", labels=["source"]),
            "last": GaugeMetricFamily("kpimon_source_last_success_timestamp_seconds",
                                      "Time of the last successful poll.", labels=["source"]),
            "rows": GaugeMetricFamily("kpimon_source_rows", "Rows stored by the last "
                                      "successful poll.", labels=["source"]),
            "rejected": GaugeMetricFamily("kpimon_source_last_poll_rows_rejected", "Rows "
                                          "rejected as invalid by the last successful poll.",
                                          labels=["source"]),
            "duration": GaugeMetricFamily("kpimon_source_poll_duration_seconds", "Duration "
                                          "of the last poll.", labels=["source"]),
            "failures": GaugeMetricFamily("kpimon_source_poll_failures", "Failed polls since "
                                          "start.", labels=["source"]),
            "errors": CounterMetricFamily("kpimon_source_errors", "Failed polls by kind: "
                                          + ", ".join(ERROR_KINDS) + ".",
                                          labels=["source", "kind"]),
            "rows_total": CounterMetricFamily("kpimon_source_rows_read", "Rows stored by "
                                              "successful polls.", labels=["source"]),
            "rejected_total": CounterMetricFamily("kpimon_source_rows_rejected", "Rows "
                                                  "rejected as invalid.", labels=["source"]),
        }
        for name, h in sorted(live.sources.items()):
            fams["up"].add_metric([name], 1 if h.up else 0)
            if h.last_success:
                fams["last"].add_metric([name], h.last_success.timestamp())
            fams["rows"].add_metric([name], h.rows)
            fams["rejected"].add_metric([name], h.rejected)
            fams["duration"].add_metric([name], h.duration)
            fams["failures"].add_metric([name], h.failures)
            errors = dict(h.errors)
            for kind in ERROR_KINDS:  # every kind from 0, so rate() works from the start
                fams["errors"].add_metric([name, kind], errors.get(kind, 0))
            fams["rows_total"].add_metric([name], h.rows_total)
            fams["rejected_total"].add_metric([name], h.rejected_total)
        yield from fams.values()

    def _goals(self, live) -> Iterator[Metric]:
        labels = ["goal", "kpi", "kpi_owner", "level"]
        fams = {
            "target": GaugeMetricFamily("kpimon_goal_target", "The goal's target for its "
                                        "period.", labels=labels),
            "value": GaugeMetricFamily("kpimon_goal_value", "The KPI to date in the goal's "
                                       "period." + CACHED, labels=labels),
            "expected": GaugeMetricFamily("kpimon_goal_expected", "Where the KPI should be by "
                                          "now on the goal's pace, linear or by weekday (the "
                                          "target, for ratios)." + CACHED, labels=labels),
            "forecast": GaugeMetricFamily("kpimon_goal_forecast", "The KPI forecast for the "
                                          "period's end at the pace so far." + CACHED,
                                          labels=labels),
            "forecast_low": GaugeMetricFamily("kpimon_goal_forecast_low", "Lower end of the "
                                              "forecast's 90 % interval." + CACHED,
                                              labels=labels),
            "forecast_high": GaugeMetricFamily("kpimon_goal_forecast_high", "Upper end of the "
                                               "forecast's 90 % interval." + CACHED,
                                               labels=labels),
            "at_risk": GaugeMetricFamily("kpimon_goal_at_risk", "1 if the forecast falls "
                                         "short of the goal's at_risk share of the target.",
                                         labels=labels),
            "elapsed": GaugeMetricFamily("kpimon_goal_period_elapsed_ratio", "Share of the "
                                         "goal's period already complete (0-1).",
                                         labels=labels),
        }
        for row in live.goals.iter_rows(named=True):
            key = [row["goal"], row["kpi"], row["owner"], row["level"]]
            for name, family in fams.items():
                if row[name] is not None:
                    family.add_metric(key, float(row[name]))
        yield from fams.values()

    def _rules(self, live, runtime) -> Iterator[Metric]:
        health = GaugeMetricFamily("kpimon_rule_health", "1 if the rule evaluated without "
                                   "error in its group's last cycle.", labels=["rule", "group"])
        duration = GaugeMetricFamily("kpimon_rule_group_last_duration_seconds",
                                     "Duration of the group's last evaluation.",
                                     labels=["group"])
        at = GaugeMetricFamily("kpimon_rule_group_last_evaluation_timestamp_seconds",
                               "Time of the group's last evaluation.", labels=["group"])
        series = GaugeMetricFamily(
            "kpimon_rule_series", "Series per rule by status in the last evaluation: "
            "holding (condition true), ok, or insufficient (below min_volume: not enough "
            "data yet)." + CACHED, labels=["rule", "status"])
        for group in runtime.rules.groups:
            result = live.groups.get(group.name)
            if result is None:
                continue
            duration.add_metric([group.name], result.duration)
            at.add_metric([group.name], result.evaluation.at.timestamp())
            for rule in group.rules:
                health.add_metric([rule.id, group.name],
                                  0 if rule.id in result.evaluation.errors else 1)
            for rule, status, count in series_counts(result.evaluation.candidates):
                series.add_metric([rule, status], count)
        yield from (health, duration, at, series)


def series_counts(candidates: pl.DataFrame) -> list[tuple[str, str, int]]:
    """(rule, status, count) with status holding, ok or insufficient."""
    status = (pl.when(~pl.col("sufficient")).then(pl.lit("insufficient"))
              .when(pl.col("active")).then(pl.lit("holding")).otherwise(pl.lit("ok")))
    counted = candidates.group_by("rule", status.alias("status")).len().sort("rule", "status")
    return [(r, s, n) for r, s, n in counted.iter_rows()]


@dataclass(frozen=True)
class DaemonMetrics:
    """Counters the daemon updates as events happen (not per evaluation)."""

    notifications: Counter
    evaluation_seconds: Histogram
    reloads: Counter
    reload_success: Gauge
    reload_time: Gauge


def daemon_metrics(registry: CollectorRegistry) -> DaemonMetrics:
    return DaemonMetrics(
        notifications=Counter("kpimon_notifications", "Notification delivery attempts by "
                              "receiver and outcome (sent, retry, dead).",
                              ["receiver", "outcome"], registry=registry),
        evaluation_seconds=Histogram("kpimon_evaluation_duration_seconds", "Duration of one "
                                     "rule group evaluation.", ["group"], registry=registry,
                                     buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)),
        reloads=Counter("kpimon_config_reloads", "Configuration reloads by result.",
                        ["result"], registry=registry),
        reload_success=Gauge("kpimon_config_last_reload_successful", "1 if the last "
                             "configuration reload succeeded.", registry=registry),
        reload_time=Gauge("kpimon_config_last_reload_success_timestamp_seconds", "When the "
                          "configuration was last loaded successfully.", registry=registry),
    )
