"""The daemon: wires the config, the store, the scheduler and the HTTP server.

Only wiring lives here. Each source polls on its own interval; each rule group
evaluates on its own interval; the sender drains the outbox every second. All
jobs run in UTC with coalescing, one instance at a time and an explicit misfire
grace time, so a slow cycle delays the next one instead of piling up or being
dropped silently. SIGHUP (or POST /-/reload) reloads the config and rules and
keeps the old ones when the new ones are invalid; SIGTERM and SIGINT drain and exit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry

from exporters.exposition import Exposition, Limits
from exporters.prometheus import KpimonCollector, Views, daemon_metrics
from monitor import leases, silences
from monitor.config import load_config
from monitor.cycle import (
    WINDOW_MARGIN,
    LiveState,
    evaluate_funnels,
    evaluate_goal_pace,
    evaluate_group,
    evaluate_sources,
    poll_source,
)
from monitor.errors import ConfigError
from monitor.evaluate import KPI_SCHEMA
from monitor.outbox import Sender
from monitor.report import queue_report
from monitor.retention import maintain
from monitor.runtime import Runtime, build
from monitor.server import ApiContext, App, HttpServer
from monitor.store import Store
from monitor.webconfig import BasicAuth, load_web_config, ssl_context
from notifiers.alertmanager import AlertmanagerNotifier

log = logging.getLogger("kpimon")
STOP_DRAIN_SECONDS = 3.0
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def aligned(now: datetime, origin: datetime, interval: timedelta) -> datetime:
    """The evaluation slot nearest to ``now``: origin + k * interval.

    Evaluating at exact slots (as Prometheus does) keeps ``for`` exact: a job
    that starts a few milliseconds early must not see 29.998 s instead of 30 s.
    """
    k = round((now - origin) / interval)
    return origin + k * interval


class Daemon:
    def __init__(self, config_path: str | Path, clock: Clock = utc_now,
                 listen: tuple[str, int] | None = None):
        self.config_path, self.clock = Path(config_path), clock
        self.runtime: Runtime = build(load_config(self.config_path), clock)
        cfg = self.runtime.config
        self.store = Store(cfg.store.url, self.runtime.loaded.base_dir)
        self.live = LiveState.restore(self.store, self.runtime, clock())
        self.registry = CollectorRegistry()
        self.metrics = daemon_metrics(self.registry)
        server = cfg.server
        self.exposition = Exposition(self.registry, Limits(server.max_series_per_rule,
                                                           server.max_series))
        self.registry.register(KpimonCollector(Views(
            live=lambda: self.live, runtime=lambda: self.runtime,
            outbox_counts=self.store.outbox_counts, dropped=lambda: self.exposition.dropped,
            silences=lambda: [*self.runtime.silences, *silences.stored(self.store)],
            now=clock)))
        self._dirty = threading.Event()
        self.sender = self._sender()
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 60})
        self.scheduler.add_listener(self._job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        self._reload_lock = threading.Lock()
        self._slots: dict[str, tuple[datetime, timedelta]] = {}  # group -> (origin, interval)
        self._stop = threading.Event()
        self._maintained = False
        self._reload_requested = threading.Event()
        host, port = listen or cfg.server.host_port
        app, tls = App(ApiContext(
            live=lambda: self.live, runtime=lambda: self.runtime, ready=self.ready,
            reload=self.reload, metrics=lambda: self.exposition.payload,
            store=lambda: self.store, clock=clock)), None
        if cfg.server.web_config_file:
            web, base = load_web_config(self.runtime.loaded.resolve(cfg.server.web_config_file))
            if web.basic_auth_users:
                app = BasicAuth(app, web.basic_auth_users)
            if web.tls_server_config:
                tls = ssl_context(web.tls_server_config, base)
        self.http = HttpServer(host, port, app, tls)

    def _sender(self) -> Sender:
        return Sender(self.store, self.runtime.notifiers, on_outcome=lambda r, o:
                      self.metrics.notifications.labels(r, o).inc())

    # --- jobs -----------------------------------------------------------------

    def _schedule(self, first_eval_delay: timedelta = timedelta(seconds=2)) -> None:
        now = self.clock()
        tz = self.runtime.config.global_.timezone
        for name, source in self.runtime.sources.items():
            cron = source.config.trigger(tz)
            # A cron source still polls once at start, so a restart never waits for data.
            if cron is not None:
                self.scheduler.add_job(self._poll, cron, args=[name], id=f"poll:{name}",
                                       next_run_time=now, replace_existing=True)
            else:
                self.scheduler.add_job(self._poll, "interval", args=[name], id=f"poll:{name}",
                                       seconds=source.config.interval.total_seconds(),
                                       next_run_time=now, replace_existing=True)
        default = self.runtime.config.global_.evaluation_interval
        for group in self.runtime.rules.groups:
            interval = group.interval or default
            first = now + first_eval_delay
            self._slots[group.name] = (first, interval)
            self.scheduler.add_job(self._evaluate, "interval", args=[group.name],
                                   id=f"eval:{group.name}", seconds=interval.total_seconds(),
                                   next_run_time=first, replace_existing=True)
        self.scheduler.add_job(self._send, "interval", id="send", seconds=1,
                               replace_existing=True)
        self.scheduler.add_job(self._goals, "interval", id="eval:goals",
                               seconds=default.total_seconds(),
                               next_run_time=now + first_eval_delay * 2, replace_existing=True)
        self.scheduler.add_job(self._check_sources, "interval", id="eval:sources",
                               seconds=default.total_seconds(),
                               next_run_time=now + first_eval_delay, replace_existing=True)
        self.scheduler.add_job(self._trim, "interval", id="trim", minutes=10,
                               replace_existing=True)
        self.scheduler.add_job(self._maintain, "interval", id="maintain", hours=1,
                               next_run_time=now + timedelta(minutes=1), replace_existing=True)
        self.scheduler.add_job(self._publish, "interval", id="publish", seconds=1,
                               replace_existing=True)
        for report in self.runtime.config.reports:
            self.scheduler.add_job(self._report, CronTrigger.from_crontab(
                report.cron, timezone=tz), args=[report.name], id=f"eval:report:{report.name}",
                replace_existing=True)
        resend = [n.config.resend_interval for n in self.runtime.notifiers.values()
                  if isinstance(n, AlertmanagerNotifier)]
        if resend:
            self.scheduler.add_job(self._renew_leases, "interval", id="eval:leases",
                                   seconds=min(resend).total_seconds(), replace_existing=True)

    def _poll(self, name: str) -> None:
        if name in self.runtime.sources:
            poll_source(name, self.runtime, self.store, self.live, self.clock())
            self._dirty.set()

    def _evaluate(self, group_name: str) -> None:
        group = next((g for g in self.runtime.rules.groups if g.name == group_name), None)
        if group is None:
            return
        origin, interval = self._slots[group_name]
        now = aligned(self.clock(), origin, interval)
        result = evaluate_group(group, self.runtime, self.store, self.live, now)
        self.metrics.evaluation_seconds.labels(group_name).observe(result.duration)
        self._dirty.set()

    def _goals(self) -> None:
        """Goals and funnels: kpimon's marketing alerts, on the default interval."""
        cfg = self.runtime.config
        if cfg.goals:
            evaluate_goal_pace(self.runtime, self.store, self.live, self.clock())
            self._dirty.set()
        if cfg.funnels:
            evaluate_funnels(self.runtime, self.store, self.live, self.clock())
            self._dirty.set()

    def _check_sources(self) -> None:
        evaluate_sources(self.runtime, self.store, self.live, self.clock())
        self._dirty.set()

    def _send(self) -> None:
        if self.sender.drain(self.clock()):
            self._dirty.set()

    def _publish(self, force: bool = False) -> None:
        """Rebuild /metrics after whatever changed, at most once a second, off the scrape."""
        if not (force or self._dirty.is_set()):
            return
        self._dirty.clear()
        groups = self.live.groups.values()
        kpis = [g.evaluation.kpis for g in groups if g.evaluation.kpis.height]
        self.exposition.rebuild(pl.concat(kpis) if kpis else pl.DataFrame(schema=KPI_SCHEMA))

    def _trim(self) -> None:
        since = self.clock() - self.runtime.history - WINDOW_MARGIN
        with self.live.lock:
            self.live.window = self.live.window.trim(since)

    def _report(self, name: str) -> None:
        """Render a scheduled report from the window and queue it to its receivers."""
        spec = next((r for r in self.runtime.config.reports if r.name == name), None)
        if spec is not None:
            queue_report(self.runtime, self.store, self.live.window.frame, spec, self.clock())

    def _renew_leases(self) -> None:
        leases.renew(self.runtime, self.live.alert_state, self.store, self.clock(),
                     lambda r, o: self.metrics.notifications.labels(r, o).inc())

    def _maintain(self) -> None:
        """Roll-up and retention: the whole store once after start, then the recent days."""
        cfg = self.runtime.config
        maintain(self.store, self.clock(), cfg.global_.timezone, cfg.store.retention,
                 cfg.store.rollup_after, scan=timedelta(days=3) if self._maintained else None)
        self._maintained = True

    def _job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run time %s", event.job_id, event.scheduled_run_time)
        else:
            log.error("job %s failed: %r", event.job_id, event.exception,
                      exc_info=event.exception)

    # --- lifecycle ----------------------------------------------------------------

    def ready(self) -> bool:
        return all(g.name in self.live.groups for g in self.runtime.rules.groups)

    def reload(self) -> str | None:
        """Load config and rules anew; on any error keep the running ones."""
        with self._reload_lock:
            try:
                runtime = build(load_config(self.config_path), self.clock)
            except ConfigError as exc:
                log.error("reload failed, keeping the last good config and rules:\n%s", exc)
                self.metrics.reloads.labels("failure").inc()
                self.metrics.reload_success.set(0)
                self._dirty.set()
                return str(exc)
            if runtime.config.store != self.runtime.config.store:
                log.warning("store settings changed: they take effect after a restart")
            self.runtime = runtime
            self.sender = self._sender()
            for job in self.scheduler.get_jobs():
                if job.id.startswith(("poll:", "eval:")):
                    job.remove()
            self._schedule(first_eval_delay=timedelta(0))
            self.metrics.reloads.labels("success").inc()
            self.metrics.reload_success.set(1)
            self.metrics.reload_time.set(self.clock().timestamp())
            self._dirty.set()
            log.info("reloaded: %d rules in %d groups, %d sources", len(runtime.rules.rules),
                     len(runtime.rules.groups), len(runtime.sources))
            return None

    def start(self) -> None:
        self.metrics.reload_success.set(1)
        self.metrics.reload_time.set(self.clock().timestamp())
        self._publish(force=True)  # /metrics answers from the first request on
        self.http.start()
        self._schedule()
        self.scheduler.start()
        log.info("kpimon listening on http://%s:%d with %d rules in %d groups, %d sources",
                 *self.http.server.server_address[:2], len(self.runtime.rules.rules),
                 len(self.runtime.rules.groups), len(self.runtime.sources))

    def stop(self) -> None:
        """Finish running jobs, deliver what is due for a few seconds, close everything.

        A send burst is interrupted between two messages; what is left stays in
        the outbox and goes out after the next start, never twice.
        """
        log.info("stopping: finishing running jobs")
        self.sender.stopping.set()
        self.scheduler.shutdown(wait=True)
        self.sender.stopping.clear()
        try:
            self.sender.drain(self.clock(), deadline=time.monotonic() + STOP_DRAIN_SECONDS)
        except Exception:  # never block shutdown on a receiver
            log.exception("final outbox drain failed; messages stay queued")
        self.http.stop()
        self.store.close()
        log.info("stopped")

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads. For the main thread only."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())
        self.start()
        try:
            while not self._stop.wait(0.5):
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self.reload()
        finally:
            self.stop()
