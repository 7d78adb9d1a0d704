"""Dispatch: alert state changes in, outbox messages out.

A pipeline of small stages in Alertmanager's order: build the alert views
(labels, rendered annotations) -> inhibit -> silence -> route each alert through
the route tree -> group per receiver, status and ``group_by`` labels -> one
message per group, with the time it may go (``timing``: group_wait,
group_interval, muted times, digests). Messages are written to the durable
outbox in the same transaction as the state change that caused them, so a crash
can neither lose nor double a notification.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from monitor.alerts import STATE_SCHEMA, AlertState
from monitor.config import InhibitRule, Route
from monitor.kpis import Catalog
from monitor.rulefile import Rule, RuleSet
from monitor.silences import Silence
from monitor.timing import Timing

log = logging.getLogger("kpimon.dispatch")
DEFAULT_GROUP_BY = ("alertname",)


@dataclass(frozen=True)
class Message:
    receiver: str
    payload: dict[str, Any]
    group_key: str
    not_before: datetime


@dataclass(frozen=True)
class Outgoing:
    """What one evaluation hands to the outbox."""

    messages: list[Message]
    notified: pl.DataFrame  # (rule, series) of firing alerts just notified


@dataclass(frozen=True)
class Policy:
    """Everything besides the alerts that decides who hears what, and when."""

    tree: Route
    send_resolved: dict[str, bool]
    repeat_interval: timedelta
    inhibit: Sequence[InhibitRule] = ()
    firing: Sequence[dict[str, str]] = ()  # labels of every alert firing now
    silences: Sequence[Silence] = ()
    timing: Timing = field(default_factory=Timing)


def iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()


class AlertViews:
    """Stage 1: state rows -> the alert dicts that templates and receivers see."""

    def __init__(self, rules: RuleSet, catalog: Catalog, external_url: str = ""):
        self.rules, self.catalog, self.external_url = rules, catalog, external_url
        self.by_id = {r.id: r for r in rules.rules}
        self.known = set(self.by_id)  # state rows of removed rules are skipped

    def build(self, row: dict[str, Any]) -> dict[str, Any]:
        rule = self.by_id[row["rule"]]
        series = json.loads(row["series"])
        values = json.loads(row["kpi_values"] or "{}")
        status = "resolved" if row["state"] == AlertState.RESOLVED else "firing"
        kpi = rule.kpis[0] if rule.kpis else ""
        base = {"alertname": rule.name, **series}
        context = {
            "labels": base, "value": row["value"], "values": values, "kpi": kpi,
            "window": rule.window.label, "status": status,
        }
        labels = {**base, **self._render(rule, rule.labels, context)}
        context["labels"] = labels
        return {
            "status": status,
            "labels": labels,
            "annotations": self._render(rule, rule.spec.annotations, context),
            "value": row["value"],
            "values": values,
            "kpi": kpi,
            "unit": self.catalog[kpi].unit.value if kpi in self.catalog else "number",
            "window": context["window"],
            "group": rule.group,
            "startsAt": iso(row["active_at"]),
            "firedAt": iso(row["fired_at"]),
            "endsAt": iso(row["resolved_at"]) if status == "resolved" else None,
            "generatorURL": f"{self.external_url.rstrip('/')}/api/v1/alerts"
                            if self.external_url else "",
        }

    @staticmethod
    def _render(rule: Rule, texts: dict[str, str], context: dict[str, Any]) -> dict[str, str]:
        out = {}
        for key, text in texts.items():
            template = rule.annotation_templates.get(key)
            if template is None:  # the tier's severity: a plain value
                out[key] = text
                continue
            try:
                out[key] = template.render(context)
            except Exception as exc:  # a template bug must not lose the alert
                log.error("rule %s: %s template failed (%s); sending it unrendered",
                          rule.name, key, exc)
                out[key] = text
        return out


INHERITED = ("receiver", "group_by", "group_wait", "group_interval", "repeat_interval")


def route(tree: Route, labels: dict[str, str]) -> list[Route]:
    """Stage 2: the matching routes, Alertmanager style (depth first, ``continue``),
    each with the settings it inherits filled in."""
    inherited = {k: getattr(tree, k) for k in INHERITED}
    matched = _walk(tree, labels, inherited)
    return matched or [tree]


def _walk(node: Route, labels: dict[str, str], inherited: dict[str, Any]) -> list[Route]:
    own = {k: getattr(node, k) if getattr(node, k) is not None else inherited[k]
           for k in INHERITED}
    out: list[Route] = []
    for child in node.routes:
        if all(m.matches(labels) for m in child.matchers):
            out.extend(_walk(child, labels, own) or [child.model_copy(update={
                k: getattr(child, k) if getattr(child, k) is not None else own[k]
                for k in INHERITED})])
            if not child.continue_:
                break
    return out


def group(alerts: Iterable[tuple[Route, dict[str, Any]]], send_resolved: dict[str, bool],
          timing: Timing, now: datetime) -> list[Message]:
    """Stage 3: one message per (receiver, status, group labels), or per digest."""
    groups: dict[str, tuple[Route, str, dict[str, str], list[dict[str, Any]]]] = {}
    for node, alert in alerts:
        receiver = node.receiver or ""
        if alert["status"] == "resolved" and not send_resolved.get(receiver, True):
            continue
        keys = tuple(node.group_by or DEFAULT_GROUP_BY)
        group_labels = {k: alert["labels"].get(k, "") for k in keys}
        if node.digest:  # one digest per receiver and schedule, whatever the status
            key = f"digest|{receiver}|{node.digest}"
            group_labels = {}
        else:
            key = (f"{receiver}|{alert['status']}|"
                   + json.dumps(group_labels, sort_keys=True, ensure_ascii=False))
        groups.setdefault(key, (node, receiver, group_labels, []))[3].append(alert)
    out = []
    for key, (node, receiver, group_labels, members) in groups.items():
        status = "firing" if any(a["status"] == "firing" for a in members) else "resolved"
        payload = {"receiver": receiver, "status": status, "groupLabels": group_labels,
                   "alerts": members}
        if node.digest:
            payload["digest"] = True
        out.append(Message(receiver, payload, key, timing.not_before(node, receiver, key, now)))
    return out


def silenced(labels: dict[str, str], silences: Sequence[Silence], now: datetime) -> bool:
    """Stage 1b: whether an active silence matches the alert."""
    return any(s.mutes(labels, now) for s in silences)


def inhibited(labels: dict[str, str], firing: Sequence[dict[str, str]],
              rules: Sequence[InhibitRule]) -> bool:
    """Stage 0: whether a firing alert elsewhere mutes this one."""
    return any(rule.mutes(labels, source) for rule in rules for source in firing)


def outgoing(step_transitions: pl.DataFrame, state: pl.DataFrame, views: AlertViews,
             policy: Policy, now: datetime) -> Outgoing:
    """Messages for new firing and resolved alerts, repeats of old firing ones, and
    firing alerts never notified (they were inhibited or silenced until now).

    An inhibited or silenced alert is not notified (and so not marked notified);
    a resolved message goes only to alerts whose firing was notified.
    """
    now_us = int(now.timestamp() * 1e6)
    fired = step_transitions.filter(pl.col("state").is_in([AlertState.FIRING,
                                                           AlertState.RESOLVED]))
    repeat_us = int(policy.repeat_interval.total_seconds() * 1e6)
    waiting = state.filter(
        (pl.col("state") == AlertState.FIRING)
        & (pl.col("notified_at").is_null()
           | (pl.lit(now_us) - pl.col("notified_at") >= repeat_us))
    ).join(fired.select("rule", "series"), on=["rule", "series"], how="anti")
    rows = [r for r in [*fired.to_dicts(), *waiting.select(list(STATE_SCHEMA)).to_dicts()]
            if r["state"] == AlertState.FIRING or r["notified_at"] is not None]
    alerts = [(row, views.build(row)) for row in rows if row["rule"] in views.known]
    alerts = [(row, alert) for row, alert in alerts if alert["status"] == "resolved" or not (
        (policy.inhibit and inhibited(alert["labels"], policy.firing, policy.inhibit))
        or silenced(alert["labels"], policy.silences, now))]
    routed = [(node, alert) for _, alert in alerts
              for node in route(policy.tree, alert["labels"])]
    messages = group(routed, policy.send_resolved, policy.timing, now)
    notified = pl.DataFrame(
        [(r["rule"], r["series"]) for r, _ in alerts if r["state"] == AlertState.FIRING],
        schema={"rule": pl.String, "series": pl.String}, orient="row")
    return Outgoing(messages, notified)


def mark_notified(state: pl.DataFrame, notified: pl.DataFrame, now: datetime) -> pl.DataFrame:
    if notified.height == 0:
        return state
    now_us = int(now.timestamp() * 1e6)
    flagged = notified.with_columns(pl.lit(True).alias("_n"))
    return (state.join(flagged, on=["rule", "series"], how="left")
            .with_columns(pl.when(pl.col("_n")).then(pl.lit(now_us))
                          .otherwise(pl.col("notified_at")).alias("notified_at"))
            .drop("_n"))
