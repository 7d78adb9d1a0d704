"""The pre-built exposition: vectorized KPI lines, dedup, cardinality guard, escaping."""

from __future__ import annotations

import gzip

import polars as pl
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporters.exposition import Exposition, Limits
from monitor.evaluate import KPI_SCHEMA, exposition_labels


def kpis(rows):
    frame = pl.DataFrame(rows, schema=["rule", "kpi", "campaign", "value"], orient="row")
    return frame.select(
        "rule", pl.lit("7d").alias("window"), pl.lit("kpi").alias("family"), "kpi",
        pl.format('{{"campaign":"{}"}}', "campaign").alias("series"),
        exposition_labels(["campaign"]).alias("labels"), pl.col("value").cast(pl.Float64),
    ).select(list(KPI_SCHEMA))


def parse(payload) -> dict:
    return {(s.labels["kpi"], s.labels.get("campaign")): s.value
            for f in text_string_to_metric_families(payload.plain.decode())
            if f.name == "kpimon_kpi_value" for s in f.samples}


def test_lines_parse_and_odd_label_values_are_escaped():
    rows = [("R", "cpa", 'brand "new"\\2026\nq1', 712.5), ("R", "cpa", "плюс", 1e-7),
            ("R", "ctr", "a", None), ("R", "ctr", "b", float("inf"))]
    payload = Exposition(CollectorRegistry()).rebuild(kpis(rows))
    assert parse(payload) == {("cpa", 'brand "new"\\2026\nq1'): 712.5, ("cpa", "плюс"): 1e-7}
    assert gzip.decompress(payload.gzipped) == payload.plain
    assert payload.series == 2


def test_the_same_kpi_from_two_rules_is_exported_once():
    rows = [("CPA/warning", "cpa", "a", 700.0), ("CPA/critical", "cpa", "a", 700.0)]
    payload = Exposition(CollectorRegistry()).rebuild(kpis(rows))
    assert payload.series == 1


def test_cardinality_guard_caps_each_rule_and_the_total_and_counts_the_rest(caplog):
    rows = [("Big", "cpa", f"c{i}", float(i)) for i in range(10)]
    rows += [("Small", "ctr", f"c{i}", 0.01) for i in range(3)]
    exposition = Exposition(CollectorRegistry(), Limits(per_rule=4, total=6))
    payload = exposition.rebuild(kpis(rows))
    got = parse(payload)
    assert len(got) == 6
    assert sum(k == "cpa" for k, _ in got) == 4, "a rule over its cap keeps some series"
    assert payload.series == 6
    assert exposition.dropped == {"Big": 6, "Small": 1}
    assert "cardinality limit" in caplog.text
