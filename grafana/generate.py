"""Generate kpimon's Grafana dashboards (dashboards as code).

    python grafana/generate.py      # rewrites grafana/dashboards/*.json

The JSON is committed; a test checks it matches this script. Every panel uses
the provisioned datasource by its fixed uid (no ${DS_...} inputs, which file
provisioning does not resolve), and every dashboard has a stable uid.
"""

from __future__ import annotations

import json
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "kpimon-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"


def panel(title: str, exprs: list[tuple[str, str]], kind: str = "timeseries", unit: str = "",
          w: int = 8, h: int = 8, description: str = "") -> dict:
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries" else {},
        "targets": [{"refId": chr(65 + i), "datasource": DATASOURCE, "expr": expr,
                     "legendFormat": legend} for i, (expr, legend) in enumerate(exprs)],
    }


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"w": 24, "h": 1},
            "panels": []}


def layout(panels: list[dict]) -> list[dict]:
    """Place panels left to right, wrapping at 24 columns; ids in order."""
    x = y = line_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y = 0, y + line_h
            line_h = 0
        p["gridPos"].update(x=x, y=y)
        p["id"] = i
        x, line_h = x + w, max(line_h, h)
        if p["type"] == "row":
            x, y, line_h = 0, y + 1, 0
    return panels


def variable(name: str, query: str, label: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
            "includeAll": False, "multi": False, "sort": 1, "current": {}}


def dashboard(uid: str, title: str, panels: list[dict], variables: list[dict] | None = None,
              description: str = "") -> dict:
    return {
        "id": None, "uid": uid, "title": title, "description": description,
        "tags": ["kpimon"], "timezone": "browser", "schemaVersion": 39, "version": 1,
        "editable": True, "refresh": "1m", "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": variables or []}, "annotations": {"list": []},
        "panels": layout(panels),
    }


def kpi(name: str, window: str) -> str:
    return f'kpimon_kpi_value{{kpi="{name}",window="{window}"}}'


def in_state(state: str) -> str:
    """Alerts per rule in a state, 0 (not "no data") for rules with alerts in another."""
    return (f'count by (alertname) (kpimon_alerts{{alertstate="{state}"}}) '
            'or (count by (alertname) (kpimon_alerts) * 0)')


def overview() -> dict:
    """The KPI pyramid: business on top, marketing in the middle, tactical at the base."""
    roas = ('sum by (channel) (kpimon_measure_value{measure="revenue",window="7d",'
            'campaign=""}) / sum by (channel) (kpimon_measure_value{measure="cost",'
            'window="7d",campaign=""})')
    return dashboard("kpimon-overview", "kpimon · KPI pyramid", [
        row("Goals: pace to date"),
        panel("Goals: to date, expected by now, forecast and target", [
            ("kpimon_goal_value", "{{goal}} to date"),
            ("kpimon_goal_expected", "{{goal}} expected by now"),
            ("kpimon_goal_forecast", "{{goal}} forecast"),
            ("kpimon_goal_target", "{{goal}} target"),
        ], kind="bargauge", w=24, description="A goal whose forecast is under its target is "
            "falling behind."),
        row("Business: revenue and return"),
        panel("ROAS by channel (7 days)", [(roas, "{{channel}}")], unit="none", w=12),
        panel("Revenue by channel (7 days)", [(
            'sum by (channel) (kpimon_measure_value{measure="revenue",window="7d",'
            'campaign=""})', "{{channel}}")], unit="currencyRUB", w=12),
        row("Marketing: cost of results"),
        panel("CPA by campaign (7 days)", [(kpi("cpa", "7d"), "{{channel}} / {{campaign}}")],
              unit="currencyRUB", w=12),
        panel("Conversion rate by campaign (yesterday)", [
            (kpi("cr", "1d"), "{{channel}} / {{campaign}}")], unit="percentunit", w=12),
        row("Tactical: ads and email"),
        panel("CTR (3 days)", [(kpi("ctr", "3d"), "{{campaign}}")], unit="percentunit"),
        panel("CPC (3 days)", [(kpi("cpc", "3d"), "{{campaign}}")], unit="currencyRUB"),
        panel("Unsubscribe rate by list (yesterday)", [
            (kpi("unsubscribe_rate", "1d"), "{{list}}")], unit="percentunit"),
        panel("Open rate by list (7 days)", [(kpi("open_rate", "7d"), "{{list}}")],
              unit="percentunit"),
        panel("Alerts firing", [(in_state("firing"), "{{alertname}}")], kind="stat", w=16),
    ], description="Business, marketing and tactical KPIs (DOMAIN: the KPI pyramid).")


def channel() -> dict:
    sel = 'channel="$channel",campaign="$campaign"'
    return dashboard("kpimon-channel", "kpimon · channel drill-down", [
        panel("CPA and its target", [
            (f'kpimon_kpi_value{{kpi="cpa",window="7d",{sel}}}', "CPA"),
            (f'kpimon_rule_threshold{{rule="CPAAboveTarget/warning",{sel}}}', "target"),
            (f'kpimon_rule_threshold{{rule="CPAAboveTarget/critical",{sel}}}', "critical"),
        ], unit="currencyRUB", w=12,
            description="The target line is what CPAAboveTarget compares the CPA with."),
        panel("Spend and its normal band", [
            (f'kpimon_measure_value{{measure="cost",window="1d",{sel}}}', "spend yesterday"),
            (f'kpimon_rule_threshold{{rule="SpendSpike",{sel}}}', "2x the weekday baseline"),
        ], unit="currencyRUB", w=12),
        panel("CTR and conversion (3 days)", [
            (f'kpimon_kpi_value{{kpi="ctr",window="3d",{sel}}}', "CTR"),
            (f'kpimon_kpi_value{{kpi="cr",window="3d",{sel}}}', "CR"),
        ], unit="percentunit", w=12),
        panel("Conversion rate against its floor (yesterday)", [
            (f'kpimon_kpi_value{{kpi="cr",window="1d",{sel}}}', "CR"),
            (f'kpimon_rule_threshold{{rule="ConversionRateDrop",{sel}}}', "0.6x baseline"),
        ], unit="percentunit", w=12),
        panel("Channel CPA re-aggregated from its campaigns (7 days)", [(
            'sum(kpimon_measure_value{measure="cost",window="7d",channel="$channel",'
            'campaign!=""}) / sum(kpimon_measure_value{measure="conversions",window="7d",'
            'channel="$channel",campaign!=""})', "$channel")], unit="currencyRUB", w=24),
    ], [variable("channel", 'label_values(kpimon_kpi_value{kpi="cpa"}, channel)', "Channel"),
        variable("campaign",
                 'label_values(kpimon_kpi_value{kpi="cpa",channel="$channel"}, campaign)',
                 "Campaign")])


def alerts() -> dict:
    return dashboard("kpimon-alerts", "kpimon · alert timeline", [
        panel("Alert states", [('kpimon_alerts', "{{alertname}} {{alertstate}} "
                                "{{campaign}}{{list}}{{source}}")], kind="state-timeline",
              w=24, h=12),
        panel("Firing by rule", [(in_state("firing"), "{{alertname}}")], w=12),
        panel("Pending by rule", [(in_state("pending"), "{{alertname}}")], w=12),
        panel("Series by status", [('sum by (status) (kpimon_rule_series)', "{{status}}")],
              w=12, description="insufficient: below min_volume, not enough data yet"),
        panel("Outbox", [("kpimon_outbox_messages", "{{status}}")], w=12,
              description="Notification messages: pending, sent, dead-lettered"),
    ])


def sources() -> dict:
    return dashboard("kpimon-sources", "kpimon · source health", [
        panel("Up", [("kpimon_source_up", "{{source}}")], kind="stat", w=6),
        panel("Seconds since last success", [
            ("time() - kpimon_source_last_success_timestamp_seconds", "{{source}}")],
            unit="s", w=6),
        panel("Rows per poll", [("kpimon_source_rows", "{{source}}")], w=6),
        panel("Rejected rows per hour", [
            ("increase(kpimon_source_rows_rejected_total[1h])", "{{source}}")], w=6),
        panel("Failed polls per hour, by kind", [
            ("sum by (source, kind) (increase(kpimon_source_errors_total[1h]))",
             "{{source}} {{kind}}")], w=12,
              description="read, connect, timeout, http, auth, query, parse, rejected (strict "
                          "source), store, internal"),
        panel("Poll duration", [("kpimon_source_poll_duration_seconds", "{{source}}")],
              unit="s", w=12),
        panel("Rule group evaluation time", [
            ("kpimon_rule_group_last_duration_seconds", "{{group}}")], unit="s", w=12),
        panel("Rule health", [("min by (group) (kpimon_rule_health)", "{{group}}")],
              kind="stat", w=12),
        panel("Config reload", [("kpimon_config_last_reload_successful", "ok")], kind="stat",
              w=12),
    ])


DASHBOARDS = {"overview": overview, "channel": channel, "alerts": alerts, "sources": sources}


def render() -> dict[str, str]:
    return {f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")
