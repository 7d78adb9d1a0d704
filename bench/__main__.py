"""Benchmarks of the rule engine (see README "Performance").

    python -m bench eval       one cycle of the default rule pack, 100,000 series x 56 days
    python -m bench exporter   /metrics with 100,000 KPI series: build and scrape
    python -m bench backtest   90 days of hourly data x 10,000 series
    python -m bench all

Figures are wall-clock medians on this machine plus the process' peak RSS;
they are printed, never asserted.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import polars as pl

from bench.data import BENCH_NOW, ads
from monitor import alerts
from monitor.evaluate import evaluate
from monitor.kpis import Catalog
from monitor.resources import expand_rule_globs, templates_dir
from monitor.rulefile import Vocabulary, load_rules
from monitor.templating import Templates
from monitor.window import Window

TZ = ZoneInfo("Europe/Moscow")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def default_pack():
    catalog = Catalog()
    paths = expand_rule_globs(["builtin:*.yaml"], templates_dir())
    return catalog, load_rules(paths, Vocabulary(catalog, frozenset(catalog.measures)),
                               Templates([templates_dir()], catalog))


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_eval(series: int = 100_000, days: int = 56) -> None:
    catalog, rules = default_pack()
    t0 = time.perf_counter()
    frame = ads(series, days, BENCH_NOW.replace(hour=0) - timedelta(hours=3))
    print(f"eval: {series:,} series x {days} days = {frame.height:,} rows "
          f"(generated in {time.perf_counter() - t0:.1f} s); {len(rules.rules)} rules")

    def full_cycle():
        window = Window(frame)  # a fresh frame: nothing cached
        result = evaluate(rules.rules, window.frame, BENCH_NOW, TZ, catalog, window.cache)
        step = alerts.advance(alerts.empty_state(), result.candidates, rules.rules, BENCH_NOW)
        return result, step, window

    seconds, (result, step, window) = timed(full_cycle, 5)
    firing = step.state.height
    print(f"  full cycle (evaluate + state machine): {seconds:.3f} s median of 5; "
          f"{result.candidates.height:,} rule series, {firing:,} alerts")
    later = BENCH_NOW + timedelta(seconds=15)
    seconds_cached, _ = timed(lambda: evaluate(rules.rules, window.frame, later, TZ, catalog,
                                               window.cache), 5)
    print(f"  next cycle, no new poll (cached):       {seconds_cached * 1000:.1f} ms")
    repoll = frame.filter(pl.col("ts") >= frame["ts"].max() - timedelta(days=1))
    t0 = time.perf_counter()
    merged = window.merge("acc", repoll.drop("source", "labels"))
    merge_s = time.perf_counter() - t0
    seconds_after, _ = timed(lambda: evaluate(rules.rules, merged.frame, later, TZ, catalog,
                                              dict(merged.cache)), 3)
    print(f"  cycle after a 2-day re-poll of every series: merge {merge_s:.3f} s + "
          f"evaluate {seconds_after:.3f} s")
    for n in (25_000, 50_000):
        small = frame.filter(pl.col("campaign").str.slice(9).cast(pl.Int64) < n)
        s, _ = timed(lambda small=small: evaluate(rules.rules, small, BENCH_NOW, TZ, catalog,
                                                  {}), 3)
        print(f"  scaling: {n:,} series: {s:.3f} s")
    print(f"  peak RSS: {peak_rss_mb():,.0f} MB")


def bench_exporter(series: int = 100_000, days: int = 56) -> None:
    """Build /metrics for 100,000 KPI series, then time scrapes of the built bytes."""
    import threading
    import urllib.request

    from prometheus_client import CollectorRegistry

    from exporters.exposition import Exposition
    from monitor.server import ApiContext, App, HttpServer

    catalog, rules = default_pack()
    frame = ads(series, days, BENCH_NOW.replace(hour=0) - timedelta(hours=3))
    cpa = [r for r in rules.rules if r.id == "CPAAboveTarget/warning"]
    kpis = evaluate(cpa, frame, BENCH_NOW, TZ, catalog, {}).kpis
    exposition = Exposition(CollectorRegistry())
    build, payload = timed(lambda: exposition.rebuild(kpis), 3)
    print(f"exporter: {series:,} series, {payload.series:,} samples; build once per cycle "
          f"{build:.3f} s; {len(payload.plain) / 1e6:.1f} MB plain, "
          f"{len(payload.gzipped) / 1e6:.1f} MB gzip")
    ctx = ApiContext(live=lambda: None, runtime=lambda: None, ready=lambda: True,
                     reload=lambda: None, metrics=lambda: exposition.payload)
    server = HttpServer("127.0.0.1", 0, App(ctx))
    threading.Thread(target=server.server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.port}/metrics"

    def scrape(gz: bool) -> int:
        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
        with urllib.request.urlopen(req) as resp:
            return len(resp.read())
    for gz in (False, True):
        seconds, _ = timed(lambda gz=gz: scrape(gz), 10)
        print(f"  scrape ({'gzip' if gz else 'plain'}): {seconds * 1000:.1f} ms median of 10")
    server.stop()
    print(f"  peak RSS: {peak_rss_mb():,.0f} MB")


def bench_backtest(series: int = 10_000, days: int = 90) -> None:
    catalog, rules = default_pack()
    end = BENCH_NOW.replace(hour=0)
    frame = ads(series, days * 24, end, step=timedelta(hours=1))
    print(f"backtest: {series:,} series x {days * 24:,} hours = {frame.height:,} rows; "
          f"{len(rules.rules)} rules")
    start = end - timedelta(days=days)  # every hour of the 90 days
    steps = int((end - start) / timedelta(hours=1))
    t0 = time.perf_counter()
    state, cache = alerts.empty_state(), {}
    for i in range(steps):
        t = start + i * timedelta(hours=1)
        result = evaluate(rules.rules, frame, t, TZ, catalog, cache)
        step = alerts.advance(state, result.candidates, rules.rules, t)
        state = alerts.replace_rules(state, [r.id for r in rules.rules], step.state)
    seconds = time.perf_counter() - t0
    print(f"  {steps:,} hourly evaluations over {(end - start).days} days: {seconds:.1f} s "
          f"({seconds / steps * 1000:.1f} ms per step)")
    print(f"  peak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads")
    if which in ("eval", "all"):
        bench_eval()
    if which in ("exporter", "all"):
        bench_exporter()
    if which in ("backtest", "all"):
        bench_backtest()
