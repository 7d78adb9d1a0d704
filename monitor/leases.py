"""Lease renewal for Alertmanager receivers: re-post every alert still firing.

Runs every ``resend_interval``. It sends exactly what dispatch would notify now:
firing alerts, not inhibited or silenced, routed to the receiver. A failed
renewal is logged and counted; the next run renews again, and a lease is several
runs long, so one lost post does not resolve anything.
"""

from __future__ import annotations

import logging
from datetime import datetime

import polars as pl

from monitor import dispatch, silences
from monitor.alerts import AlertState
from monitor.health import with_builtin_rules
from monitor.runtime import Runtime
from monitor.store import Store
from notifiers.alertmanager import AlertmanagerNotifier
from notifiers.base import DeliveryError

log = logging.getLogger("kpimon.notify")


def firing_by_receiver(runtime: Runtime, state: pl.DataFrame, store: Store,
                       now: datetime) -> dict[str, list[dict]]:
    cfg = runtime.config
    views = dispatch.AlertViews(with_builtin_rules(runtime.rules), runtime.catalog,
                                cfg.global_.external_url)
    rows = [r for r in state.filter(pl.col("state") == AlertState.FIRING).iter_rows(named=True)
            if r["rule"] in views.known]
    alerts = [views.build(r) for r in rows]
    firing_labels = [a["labels"] for a in alerts]
    active = [*runtime.silences, *silences.stored(store)]
    out: dict[str, list[dict]] = {}
    for alert in alerts:
        if dispatch.silenced(alert["labels"], active, now) or (
                cfg.inhibit_rules and dispatch.inhibited(alert["labels"], firing_labels,
                                                         cfg.inhibit_rules)):
            continue
        for node in dispatch.route(cfg.route, alert["labels"]):
            out.setdefault(node.receiver or "", []).append(alert)
    return out


def renew(runtime: Runtime, state: pl.DataFrame, store: Store, now: datetime,
          on_outcome=lambda receiver, outcome: None) -> int:
    """Re-post the firing alerts of every Alertmanager receiver; returns alerts posted."""
    targets = {name: n for name, n in runtime.notifiers.items()
               if isinstance(n, AlertmanagerNotifier)}
    if not targets:
        return 0
    posted = 0
    for name, alerts in firing_by_receiver(runtime, state, store, now).items():
        notifier = targets.get(name)
        if notifier is None or not alerts:
            continue
        try:
            notifier.refresh(alerts)
            posted += len(alerts)
            on_outcome(name, "renewed")
        except DeliveryError as exc:
            log.warning("lease renewal to %s failed, next run retries: %s", name, exc)
            on_outcome(name, "renewal_failed")
    return posted
