"""kpimon's own ``FunnelBottleneck`` alert: one per funnel segment whose weakest step fell.

Candidates come from ``funnels.evaluate_funnel``; the alert carries the step,
the rates now and before, and the diagnosis in both languages, and resolves with
hysteresis once the step has recovered to within half of ``min_drop``.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo

import polars as pl

from monitor.funnels import FunnelSpec, evaluate_funnel
from monitor.kpis import Catalog
from monitor.resources import templates_dir
from monitor.rulefile import Rule, compile_text
from monitor.sources.base import label_key

RULE_TEXT = """
groups:
  - name: kpimon-funnels
    rules:
      - alert: FunnelBottleneck
        expr: funnel_step_change < 0
        by: [funnel]
        labels:
          severity: warning
          level: marketing
          kpi_owner: "{{ values.owner }}"
          stage: "{{ values.step }}"
        annotations:
          summary: >-
            {{ labels.funnel }}{% for k, v in labels.items() if k not in ('alertname',
            'funnel', 'severity', 'level', 'kpi_owner', 'stage') %} {{ v }}{% endfor %}:
            {{ values.step_title }} fell to {% if values.money %}{{ values.rate | money }}
            from {{ values.base_rate | money }}{% else %}{{ values.rate | percent(2) }}
            from {{ values.base_rate | percent(2) }}{% endif %} ({{ values.change | change }})
            over the last {{ values.window }} days
          summary_ru: >-
            {{ labels.funnel }}{% for k, v in labels.items() if k not in ('alertname',
            'funnel', 'severity', 'level', 'kpi_owner', 'stage') %} {{ v }}{% endfor %}:
            шаг {{ values.step_title }} упал до {% if values.money %}{{ values.rate | money }}
            с {{ values.base_rate | money }}{% else %}{{ values.rate | percent(2) }}
            с {{ values.base_rate | percent(2) }}{% endif %} ({{ values.change | change }})
            за последние {{ values.window }} дн.
          diagnosis: "{{ values.diagnosis }}"
          diagnosis_ru: "{{ values.diagnosis_ru }}"
          next_step: >-
            {{ values.diagnosis }} Compare with the {{ values.baseline }} days before; fix
            this step first: the stages after it cannot do better than it.
          next_step_ru: >-
            {{ values.diagnosis_ru }} Сравнение — с {{ values.baseline }} предыдущими днями;
            начните с этого шага: следующие этапы не сработают лучше него.
"""


@cache
def funnel_rule() -> Rule:
    from monitor.rulefile import Vocabulary
    from monitor.templating import Templates

    catalog = Catalog()
    rules = compile_text(RULE_TEXT, "<built-in kpimon rules>",
                         Vocabulary(catalog, frozenset({"funnel_step_change"})),
                         Templates([templates_dir()], catalog))
    return rules.rules[0]


CANDIDATE_SCHEMA = {"rule": pl.String, "series": pl.String, "value": pl.Float64,
                    "active": pl.Boolean, "sufficient": pl.Boolean, "clear": pl.Boolean,
                    "kpi_values": pl.String}


def funnel_candidates(specs: list[FunnelSpec], frame: pl.DataFrame, now: datetime,
                      tz: ZoneInfo) -> pl.DataFrame:
    """Candidate rows of every funnel's segments, built column-wise."""
    parts = [pl.DataFrame(schema=CANDIDATE_SCHEMA)]
    for spec in specs:
        out = evaluate_funnel(spec, frame, now, tz)
        if out.height == 0:
            continue
        step = pl.col("step_name")
        parts.append(out.with_columns(pl.lit(spec.name).alias("funnel")).select(
            pl.lit(funnel_rule().id).alias("rule"),
            label_key(sorted(["funnel", *spec.by])).alias("series"),
            pl.col("worst").alias("value"),
            pl.col("active"),
            pl.col("sufficient"),
            # Hysteresis: resolved once the step is back within half of min_drop.
            (pl.col("worst") >= -spec.min_drop / 2).fill_null(True).alias("clear"),
            pl.struct(
                step.str.replace(">", " → ", literal=True).alias("step_title"),
                step.str.replace(">", "→", literal=True).alias("step"),
                pl.col("rate"), pl.col("base_rate"), pl.col("worst").alias("change"),
                pl.col("diagnosis"), pl.col("diagnosis_ru"),
                step.str.ends_with(">revenue").alias("money"),
                pl.lit(spec.owner).alias("owner"),
                pl.lit(spec.window.days).alias("window"),
                pl.lit(spec.baseline.days).alias("baseline"),
            ).struct.json_encode().alias("kpi_values"),
        ))
    return pl.concat(parts, how="vertical_relaxed")
