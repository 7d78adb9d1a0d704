"""kpimon's own ``GoalAtRisk`` alert: a goal whose forecast falls short of its target.

It goes through the same state machine, silences, inhibition and routes as any
rule; its labels carry the goal's owner and level, so a route can send each
owner their goals. The message says plan against fact in the reader's language,
in percentage points for ratios and percent otherwise.
"""

from __future__ import annotations

import json
from functools import cache

import polars as pl

from monitor.kpis import Catalog
from monitor.resources import templates_dir
from monitor.rulefile import Rule, compile_text

RULE_TEXT = """
groups:
  - name: kpimon-goals
    rules:
      - alert: GoalAtRisk
        expr: goal_forecast_share < 1
        by: [goal]
        labels:
          severity: warning
          kpi_owner: "{{ values.owner }}"
          level: "{{ values.level }}"
          kpi: "{{ values.kpi }}"
        annotations:
          summary: >-
            Goal {{ labels.goal }}: {{ kpi_title(values.kpi) }} forecast
            {{ values.forecast | plan_fact(values.target, values.kpi) }}
            ({{ values.forecast_low | kpi(values.kpi) }} to
            {{ values.forecast_high | kpi(values.kpi) }}, 90 %)
          summary_ru: >-
            Цель {{ labels.goal }}: прогноз {{ kpi_title(values.kpi) }}
            {{ values.forecast | plan_fact(values.target, values.kpi) }}
            (от {{ values.forecast_low | kpi(values.kpi) }}
            до {{ values.forecast_high | kpi(values.kpi) }}, 90 %)
          description: >-
            {{ values.value | kpi(values.kpi) }} so far after {{ values.days_done }} days,
            {{ values.expected | kpi(values.kpi) }} expected by now ({{ values.pacing }} pace).
          description_ru: >-
            За {{ values.days_done }} дн. — {{ values.value | kpi(values.kpi) }},
            к этому дню ожидалось {{ values.expected | kpi(values.kpi) }}.
          next_step: >-
            Find the cause before the period ends: weak traffic, low conversion or poor
            leads; check the funnel and the supporting KPIs, then adjust budget or channels.
          next_step_ru: >-
            Найдите причину до конца периода: мало трафика, низкая конверсия или слабые
            лиды; проверьте воронку и вспомогательные KPI, затем перераспределите бюджет
            или каналы.
"""


@cache
def goal_rule() -> Rule:
    from monitor.rulefile import Vocabulary
    from monitor.templating import Templates

    catalog = Catalog()
    rules = compile_text(RULE_TEXT, "<built-in kpimon rules>",
                         Vocabulary(catalog, frozenset({"goal_forecast_share"})),
                         Templates([templates_dir()], catalog))
    return rules.rules[0]


def goal_candidates(goals: pl.DataFrame) -> pl.DataFrame:
    """One candidate per goal: at risk holds the condition; early days are insufficient."""
    rows = []
    for g in goals.iter_rows(named=True):
        share = (g["forecast"] / g["target"]) if g["forecast"] is not None and g["target"] \
            else None
        values = {k: g[k] for k in ("kpi", "owner", "level", "target", "value", "expected",
                                    "forecast", "forecast_low", "forecast_high", "days_done",
                                    "pacing")}
        rows.append((goal_rule().id, json.dumps({"goal": g["goal"]}, separators=(",", ":")),
                     share, bool(g["at_risk"]), g["forecast"] is not None, not g["at_risk"],
                     json.dumps(values, ensure_ascii=False)))
    return pl.DataFrame(rows, schema={
        "rule": pl.String, "series": pl.String, "value": pl.Float64, "active": pl.Boolean,
        "sufficient": pl.Boolean, "clear": pl.Boolean, "kpi_values": pl.String}, orient="row")
