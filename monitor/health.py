"""kpimon's own alerts about its sources, through the same state machine and routes.

``KpimonSourceDown`` fires for a source whose last poll failed or which has not
succeeded for three of its intervals (stale). Rules that read a failing source's
measures keep their alert state meanwhile (``on_error: keep_state``), so a
broken export neither resolves real alerts nor raises false ones.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache

import polars as pl

from monitor.kpis import Catalog
from monitor.resources import templates_dir
from monitor.rulefile import Rule, RuleSet, Vocabulary, compile_text

STALE_INTERVALS = 3
RULE_TEXT = """
groups:
  - name: kpimon
    rules:
      - alert: KpimonSourceDown
        expr: source_down > 0
        by: [source]
        labels: {severity: warning, level: tactical}
        annotations:
          summary: "Source {{ labels.source }} is failing: {{ values.get('error', '') }}"
          summary_ru: "Источник {{ labels.source }} не отвечает: {{ values.get('error', '') }}"
          next_step: >-
            Its KPIs keep their last known state until it recovers; check the
            source's credentials, URL or file.
          next_step_ru: >-
            Его KPI сохраняют последнее известное состояние до восстановления;
            проверьте доступы, адрес или файл источника.
"""


@cache
def source_rule() -> Rule:
    from monitor.templating import Templates

    catalog = Catalog()
    rules = compile_text(RULE_TEXT, "<built-in kpimon rules>",
                         Vocabulary(catalog, frozenset({"source_down"})),
                         Templates([templates_dir()], catalog))
    return rules.rules[0]


def with_builtin_rules(rules: RuleSet) -> RuleSet:
    """The rule set the API and dispatch see: the user's rules plus kpimon's own
    (KpimonSourceDown, GoalAtRisk, FunnelBottleneck)."""
    from monitor.funnel_rule import funnel_rule
    from monitor.goal_rule import goal_rule
    from monitor.rulefile import Group

    return RuleSet((*rules.groups, Group("kpimon", "<built-in>", None,
                                         (source_rule(), goal_rule(), funnel_rule()))),
                   rules.warnings)


def source_candidates(sources: dict, intervals: dict[str, float], now: datetime,
                      ) -> pl.DataFrame:
    """One candidate row per source: failing or stale sources hold the condition."""
    rows = []
    for name, h in sorted(sources.items()):
        age = (now - h.last_success).total_seconds() if h.last_success else None
        stale = age is not None and age > STALE_INTERVALS * intervals.get(name, 300)
        down = (h.polls > 0 and not h.up) or stale
        error = h.last_error or (f"no successful poll for {int(age)} s" if stale else "")
        rows.append((source_rule().id, json.dumps({"source": name}, separators=(",", ":")),
                     float(h.failures), down, True, not down,
                     json.dumps({"error": error}, ensure_ascii=False)))
    return pl.DataFrame(rows, schema={
        "rule": pl.String, "series": pl.String, "value": pl.Float64, "active": pl.Boolean,
        "sufficient": pl.Boolean, "clear": pl.Boolean, "kpi_values": pl.String}, orient="row")


def failing_sources(sources: dict) -> set[str]:
    return {name for name, h in sources.items() if h.polls > 0 and not h.up}


def rules_on_failing_sources(rules: tuple[Rule, ...], failing: set[str],
                             measures_by_source: dict[str, frozenset[str]]) -> set[str]:
    """Ids of rules with on_error=keep_state that read a measure of a failing source."""
    bad = frozenset().union(*(measures_by_source.get(s, frozenset()) for s in failing))
    return {r.id for r in rules if r.spec.on_error == "keep_state" and r.measures & bad}
