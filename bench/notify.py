"""Notification pipeline benchmark (see README "Performance").

    python -m bench.notify

10,000 alerts start at once (one evaluation: 10,000 campaigns of the default
pack's CPA rule go firing). Measured: the dispatch stages (views with rendered
annotations, inhibition, silences, routing through a route tree with matchers
and ``continue``, grouping) plus writing the messages to the outbox in one
SQLite transaction, as an evaluation does. Wall-clock, printed, never asserted.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl

from bench.__main__ import default_pack, peak_rss_mb
from bench.data import BENCH_NOW
from monitor import dispatch
from monitor.alerts import STATE_SCHEMA, TRANSITION_SCHEMA
from monitor.config import InhibitRule, Route, SilenceSpec
from monitor.silences import from_config
from monitor.store import Store, to_micros
from monitor.timing import Timing

ALERTS = 10_000
TREE = Route.model_validate({
    "receiver": "log", "group_by": ["alertname", "channel"], "routes": [
        {"matchers": ['severity="critical"'], "receiver": "oncall", "continue": True},
        {"matchers": ['channel=~"google.*"'], "receiver": "ppc-google",
         "group_by": ["alertname", "campaign"]},
        {"matchers": ['channel="yandex_direct"'], "receiver": "ppc-yandex"},
    ]})


def cpa(i: int) -> float:
    """A different CPA for every alert, so no formatting is the same twice."""
    return round(650.0 + (i * 37.77) % 3000, 2)


def main() -> None:
    catalog, rules = default_pack()
    rule = next(r for r in rules.rules if r.name == "CPAAboveTarget")
    now_us = to_micros(BENCH_NOW)
    channels = ["google_ads", "yandex_direct", "meta"]
    transitions = pl.DataFrame([
        (rule.id, json.dumps({"channel": channels[i % 3], "campaign": f"campaign_{i}"},
                             separators=(",", ":")),
         "firing", now_us, now_us, None, now_us, None, cpa(i), json.dumps({"cpa": cpa(i)}),
         "pending") for i in range(ALERTS)], schema=TRANSITION_SCHEMA, orient="row")
    state = transitions.select(list(STATE_SCHEMA))
    views = dispatch.AlertViews(rules, catalog, "http://kpimon:8464")
    policy = dispatch.Policy(
        tree=TREE, send_resolved={}, repeat_interval=timedelta(hours=4),
        inhibit=[InhibitRule.model_validate({"source_matchers": ['severity="critical"'],
                                             "target_matchers": ['severity="warning"'],
                                             "equal": ["campaign"]})],
        firing=[], silences=from_config([SilenceSpec.model_validate({
            "matchers": ['campaign="campaign_7"'], "ends_at": "2030-01-01T00:00:00+00:00"})]),
        timing=Timing())
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'k.db'}")
        t0 = time.perf_counter()
        out = dispatch.outgoing(transitions, state, views, policy, BENCH_NOW)
        t1 = time.perf_counter()
        with store.transaction() as conn:
            store.enqueue(out.messages, BENCH_NOW, conn)
        t2 = time.perf_counter()
        store.close()
    print(f"{ALERTS:,} alerts at once -> {len(out.messages):,} messages "
          f"({out.notified.height:,} alerts notified, 1 silenced)")
    print(f"  route, inhibit, silence, group:  {t1 - t0:6.2f} s")
    print(f"  write to the outbox:             {t2 - t1:6.2f} s")
    print(f"  total:                           {t2 - t0:6.2f} s")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
