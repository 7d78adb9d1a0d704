"""Dispatch: alert state changes in, outbox messages out.

A pipeline of small stages in Alertmanager's order: build the alert views
(labels, rendered annotations) -> route each alert through the route tree ->
group per receiver, status and ``group_by`` labels -> one message per group.
Messages are written to the durable outbox in the same transaction as the state
change that caused them, so a crash can neither lose nor double a notification.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from monitor.alerts import STATE_SCHEMA, AlertState
from monitor.config import InhibitRule, Route
from monitor.kpis import Catalog
from monitor.rulefile import Rule, RuleSet

log = logging.getLogger("kpimon.dispatch")
DEFAULT_GROUP_BY = ("alertname",)


@dataclass(frozen=True)
class Outgoing:
    """What one evaluation hands to the outbox."""

    messages: list[tuple[str, dict[str, Any]]]  # (receiver, payload)
    notified: pl.DataFrame  # (rule, series) of firing alerts just notified


def iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()


class AlertViews:
    """Stage 1: state rows -> the alert dicts that templates and receivers see."""

    def __init__(self, rules: RuleSet, catalog: Catalog, external_url: str = ""):
        self.rules, self.catalog, self.external_url = rules, catalog, external_url
        self.known = {r.id for r in rules.rules}  # state rows of removed rules are skipped

    def build(self, row: dict[str, Any]) -> dict[str, Any]:
        rule = self.rules.rule(row["rule"])
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


def route(tree: Route, labels: dict[str, str]) -> list[Route]:
    """Stage 2: the matching routes, Alertmanager style (depth first, ``continue``)."""
    matched = _walk(tree, labels, tree.receiver, tree.group_by, tree.repeat_interval)
    return matched or [tree]


def _walk(node: Route, labels: dict[str, str], receiver: str | None,
          group_by: list[str] | None, repeat: timedelta | None) -> list[Route]:
    receiver = node.receiver or receiver
    group_by = node.group_by if node.group_by is not None else group_by
    repeat = node.repeat_interval or repeat
    out: list[Route] = []
    for child in node.routes:
        if all(m.matches(labels) for m in child.matchers):
            out.extend(_walk(child, labels, receiver, group_by, repeat)
                       or [_effective(child, receiver, group_by, repeat)])
            if not child.continue_:
                break
    return out


def _effective(node: Route, receiver: str | None, group_by: list[str] | None,
               repeat: timedelta | None) -> Route:
    return node.model_copy(update={
        "receiver": node.receiver or receiver,
        "group_by": node.group_by if node.group_by is not None else group_by,
        "repeat_interval": node.repeat_interval or repeat,
    })


def group(alerts: Iterable[tuple[Route, dict[str, Any]]], send_resolved: dict[str, bool],
          ) -> list[tuple[str, dict[str, Any]]]:
    """Stage 3: one message per (receiver, status, group labels)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for node, alert in alerts:
        receiver = node.receiver or ""
        if alert["status"] == "resolved" and not send_resolved.get(receiver, True):
            continue
        keys = tuple(node.group_by or DEFAULT_GROUP_BY)
        group_labels = tuple((k, alert["labels"].get(k, "")) for k in keys)
        groups.setdefault((receiver, alert["status"], group_labels), []).append(alert)
    return [
        (receiver, {"receiver": receiver, "status": status, "groupLabels": dict(gl),
                    "alerts": alerts})
        for (receiver, status, gl), alerts in groups.items()
    ]


def inhibited(labels: dict[str, str], firing: Sequence[dict[str, str]],
              rules: Sequence[InhibitRule]) -> bool:
    """Stage 0: whether a firing alert elsewhere mutes this one."""
    return any(rule.mutes(labels, source) for rule in rules for source in firing)


def outgoing(step_transitions: pl.DataFrame, state: pl.DataFrame, views: AlertViews,
             tree: Route, send_resolved: dict[str, bool], repeat_interval: timedelta,
             now: datetime, inhibit: Sequence[InhibitRule] = (),
             firing: Sequence[dict[str, str]] = ()) -> Outgoing:
    """Messages for new firing and resolved alerts, plus repeats of old firing ones.

    An inhibited alert is not notified (and so not marked notified); a resolved
    message goes only to alerts whose firing was notified.
    """
    now_us = int(now.timestamp() * 1e6)
    fired = step_transitions.filter(pl.col("state").is_in([AlertState.FIRING,
                                                           AlertState.RESOLVED]))
    repeat_us = int(repeat_interval.total_seconds() * 1e6)
    repeats = state.filter(
        (pl.col("state") == AlertState.FIRING) & pl.col("notified_at").is_not_null()
        & (pl.lit(now_us) - pl.col("notified_at") >= repeat_us)
    ).join(fired.select("rule", "series"), on=["rule", "series"], how="anti")
    rows = [r for r in [*fired.to_dicts(), *repeats.select(list(STATE_SCHEMA)).to_dicts()]
            if r["state"] == AlertState.FIRING or r["notified_at"] is not None]
    alerts = [(row, views.build(row)) for row in rows]
    alerts = [(row, alert) for row, alert in alerts if not (
        alert["status"] == "firing" and inhibit and inhibited(alert["labels"], firing, inhibit))]
    routed = [(node, alert) for _, alert in alerts for node in route(tree, alert["labels"])]
    messages = group(routed, send_resolved)
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
