"""One poll and one evaluation: the two steps the daemon schedules.

``LiveState`` holds the few values the steps share (the window, the alert
state, source health, the last evaluation per group); each is an immutable
value swapped under a lock, so readers (the exporter, the API) never block a
step and never see half of one. ``now`` is always a parameter.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import polars as pl

from monitor import alerts, dispatch, health, silences
from monitor.errors import KpimonError
from monitor.evaluate import Evaluation, evaluate
from monitor.funnel_rule import funnel_candidates, funnel_rule
from monitor.goal_rule import goal_candidates, goal_rule
from monitor.goals import GOAL_SCHEMA, evaluate_goals
from monitor.rulefile import Group, Rule
from monitor.runtime import Runtime
from monitor.sources.base import poll_range
from monitor.store import Store
from monitor.timing import Timing
from monitor.window import Window

log = logging.getLogger("kpimon")
# History kept beyond the longest rule window: a window of N days can start up
# to a day earlier than now - N days (it ends at local midnight), plus DST.
WINDOW_MARGIN = timedelta(days=2)


@dataclass(frozen=True)
class SourceHealth:
    up: bool = False
    last_success: datetime | None = None
    last_error: str = ""
    rows: int = 0
    rejected: int = 0
    duration: float = 0.0
    polls: int = 0
    failures: int = 0
    rows_total: int = 0  # since start, for counters
    rejected_total: int = 0
    errors: tuple[tuple[str, int], ...] = ()  # failures by kind (read, http, parse…)

    def with_error(self, kind: str) -> tuple[tuple[str, int], ...]:
        counts = dict(self.errors)
        counts[kind] = counts.get(kind, 0) + 1
        return tuple(sorted(counts.items()))


@dataclass(frozen=True)
class GroupResult:
    evaluation: Evaluation
    duration: float
    transitions: int


@dataclass
class LiveState:
    window: Window = field(default_factory=Window.empty)
    alert_state: pl.DataFrame = field(default_factory=alerts.empty_state)
    sources: dict[str, SourceHealth] = field(default_factory=dict)
    groups: dict[str, GroupResult] = field(default_factory=dict)
    goals: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=GOAL_SCHEMA))
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def restore(cls, store: Store, runtime: Runtime, now: datetime) -> LiveState:
        """Reload the window and the alert state after a start or restart."""
        since = now - runtime.history - WINDOW_MARGIN
        frame = store.load_observations(since)
        successes = store.source_successes()
        return cls(
            window=Window(frame.sort("ts")) if frame.height else Window.empty(),
            alert_state=store.load_alert_state(),
            sources={name: SourceHealth(last_success=successes.get(name))
                     for name in runtime.sources},
        )


def poll_source(name: str, runtime: Runtime, store: Store, live: LiveState,
                now: datetime) -> SourceHealth:
    """Poll one source, store its rows and merge them into the window.

    A failure is recorded in the source's health and logged; it never raises,
    so one broken source cannot stop the others or the evaluation.
    """
    source = runtime.sources[name]
    cfg = source.config
    health = live.sources.get(name, SourceHealth())
    start, end = poll_range(now - cfg.offset, cfg.lookback, health.last_success, cfg.backfill)
    t0 = time.perf_counter()
    try:
        frame = source.poll(start, end)
        with store.transaction() as conn:
            rows = store.replace_observations(name, frame, now, conn)
            store.record_success(name, now, conn)
    except KpimonError as exc:
        return _failed(name, live, health, str(exc), getattr(exc, "kind", "store"),
                       time.perf_counter() - t0)
    except Exception as exc:  # a source bug must not stop the daemon
        log.exception("source %s failed unexpectedly", name)
        return _failed(name, live, health, f"{type(exc).__name__}: {exc}", "internal",
                       time.perf_counter() - t0)
    rejected = getattr(source, "rejected", 0)
    new = replace(health, up=True, last_success=now, last_error="", rows=rows,
                  rejected=rejected, duration=time.perf_counter() - t0,
                  polls=health.polls + 1, rows_total=health.rows_total + rows,
                  rejected_total=health.rejected_total + rejected)
    with live.lock:
        live.window = live.window.merge(name, frame)
        live.sources = {**live.sources, name: new}
    log.info("source %s: %d rows for %s .. %s", name, rows, start.isoformat(timespec="minutes"),
             end.isoformat(timespec="minutes"))
    return new


def _failed(name: str, live: LiveState, health: SourceHealth, error: str, kind: str,
            duration: float) -> SourceHealth:
    log.error("source %s: poll failed (%s), stored data kept: %s", name, kind, error)
    new = replace(health, up=False, last_error=error, duration=duration, polls=health.polls + 1,
                  failures=health.failures + 1, errors=health.with_error(kind))
    with live.lock:
        live.sources = {**live.sources, name: new}
    return new


def evaluate_group(group: Group, runtime: Runtime, store: Store, live: LiveState,
                   now: datetime) -> GroupResult:
    """Evaluate a group's rules, advance their alerts, persist and enqueue in one transaction."""
    t0 = time.perf_counter()
    window = live.window
    result = evaluate(group.rules, window.frame, now, runtime.tz, runtime.catalog,
                      window.cache)
    frozen = health.rules_on_failing_sources(
        group.rules, health.failing_sources(live.sources),
        {name: frozenset(s.measures) for name, s in runtime.sources.items()})
    advancing = [r for r in group.rules if r.id not in result.errors and r.id not in frozen]
    step = _advance_and_commit(advancing, result.candidates, runtime, store, live, now)
    res = GroupResult(result, time.perf_counter() - t0, step.transitions.height)
    with live.lock:
        live.groups = {**live.groups, group.name: res}
    return res


def evaluate_sources(runtime: Runtime, store: Store, live: LiveState, now: datetime) -> int:
    """Advance the built-in source alerts; returns how many changed state."""
    intervals = {name: s.config.period(runtime.config.global_.timezone, now).total_seconds()
                 for name, s in runtime.sources.items()}
    candidates = health.source_candidates(live.sources, intervals, now)
    step = _advance_and_commit([health.source_rule()], candidates, runtime, store, live, now)
    return step.transitions.height


def _advance_and_commit(rules: list[Rule], candidates: pl.DataFrame, runtime: Runtime,
                        store: Store, live: LiveState, now: datetime) -> alerts.Step:
    cfg = runtime.config
    step = alerts.advance(live.alert_state, candidates, rules, now)
    views = dispatch.AlertViews(health.with_builtin_rules(runtime.rules), runtime.catalog,
                                cfg.global_.external_url)
    send_resolved = {r.name: r.send_resolved for r in cfg.receivers}
    ids = [r.id for r in rules]
    firing = []
    if cfg.inhibit_rules:  # the labels of every alert firing now, any rule's
        everything = alerts.replace_rules(live.alert_state, ids, step.state)
        firing = [views.build(row)["labels"] for row in everything.filter(
            pl.col("state") == alerts.AlertState.FIRING).iter_rows(named=True)
                  if row["rule"] in views.known]
    policy = dispatch.Policy(
        tree=cfg.route, send_resolved=send_resolved, repeat_interval=cfg.repeat_interval,
        inhibit=cfg.inhibit_rules, firing=firing,
        silences=[*runtime.silences, *silences.stored(store)],
        timing=Timing({i.name: i for i in cfg.time_intervals},
                      store.last_sent(now - timedelta(days=1)), cfg.global_.timezone))
    out = dispatch.outgoing(step.transitions, step.state, views, policy, now)
    new_state = dispatch.mark_notified(step.state, out.notified, now)
    with store.transaction() as conn:
        store.replace_alert_state(ids, new_state, conn)
        store.enqueue(out.messages, now, conn)
    with live.lock:
        live.alert_state = alerts.replace_rules(live.alert_state, ids, new_state)
    for row in step.transitions.iter_rows(named=True):
        log.info("alert %s %s: %s -> %s (value %s)", row["rule"], row["series"],
                 row["previous"], row["state"], _short(row["value"]))
    return step


def _short(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def evaluate_goal_pace(runtime: Runtime, store: Store, live: LiveState,
                       now: datetime) -> pl.DataFrame:
    """Recompute every goal's pace from the window (a few sums per goal) and advance
    the GoalAtRisk alerts."""
    goals = evaluate_goals(list(runtime.config.goals), live.window.frame, now, runtime.tz,
                           runtime.catalog)
    with live.lock:
        live.goals = goals
    _advance_and_commit([goal_rule()], goal_candidates(goals), runtime, store, live, now)
    return goals


def evaluate_funnels(runtime: Runtime, store: Store, live: LiveState, now: datetime) -> int:
    """Diagnose every funnel and advance the FunnelBottleneck alerts; returns transitions."""
    candidates = funnel_candidates(list(runtime.config.funnels), live.window.frame, now,
                                   runtime.tz)
    step = _advance_and_commit([funnel_rule()], candidates, runtime, store, live, now)
    return step.transitions.height
