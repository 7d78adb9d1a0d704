"""Funnel diagnosis: the right bottleneck and diagnosis per scenario, and the alert."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.funnels import AUDIENCE, IRRELEVANT, FunnelSpec, evaluate_funnel
from monitor.sources.base import TS, TS_DTYPE
from tests.conftest import write
from tests.test_pipeline import HOOK, Instance, csv_slack_config

NOW = datetime(2026, 3, 13, 12, tzinfo=UTC)
TZ = ZoneInfo("UTC")
NORMAL = {"impressions": 100_000, "clicks": 2_000, "leads": 200, "conversions": 40,
          "revenue": 100_000, "cost": 20_000}


def days(n: int) -> list[date]:
    return [date(2026, 3, 13) - timedelta(days=n - i) for i in range(n)]


def frame(recent: dict[str, float], campaign: str = "brand") -> pl.DataFrame:
    """28 normal days, then 3 days with ``recent`` overriding the normal volumes."""
    rows = []
    for i, d in enumerate(days(31)):
        values = {**NORMAL, **(recent if i >= 28 else {})}
        rows.append({TS: datetime(d.year, d.month, d.day, tzinfo=UTC), "campaign": campaign,
                     **{k: float(v) for k, v in values.items()}})
    return pl.DataFrame(rows, schema_overrides={TS: TS_DTYPE})


SPEC = FunnelSpec(name="paid", stages=["impressions", "clicks", "leads", "conversions",
                                       "revenue"], by=["campaign"])


def diagnose(recent: dict[str, float], spec: FunnelSpec = SPEC) -> dict:
    [row] = evaluate_funnel(spec, frame(recent), NOW, TZ).to_dicts()
    return row


@pytest.mark.parametrize(("recent", "step", "words"), [
    ({"leads": 60, "conversions": 12, "revenue": 30_000}, "clicks>leads", "landing page"),
    ({"conversions": 10, "revenue": 25_000}, "leads>conversions", "sales process"),
    ({"clicks": 1_000, "leads": 100, "conversions": 20, "revenue": 50_000},
     "impressions>clicks", "creative or the targeting"),
    ({"revenue": 40_000}, "conversions>revenue", "average order"),
])
def test_the_step_that_fell_most_and_its_diagnosis(recent, step, words):
    row = diagnose(recent)
    assert row["step_name"] == step and row["active"] and row["sufficient"]
    assert words in row["diagnosis"]
    assert row["diagnosis_ru"]  # the Russian text is there too


def test_a_ctr_jump_with_collapsing_conversion_is_irrelevant_traffic():
    row = diagnose({"clicks": 8_000, "leads": 100, "conversions": 20, "revenue": 50_000})
    assert row["step_name"] == "clicks>leads"
    assert row["diagnosis"] == IRRELEVANT[0]
    assert row["worst"] == pytest.approx((100 / 8000) / (200 / 2000) - 1)


def test_a_rising_cpa_with_less_revenue_per_sale_is_the_audience():
    row = diagnose({"revenue": 40_000, "cost": 30_000})
    assert row["step_name"] == "conversions>revenue" and row["diagnosis"] == AUDIENCE[0]


def test_no_drop_no_alert_and_a_small_segment_is_insufficient():
    row = diagnose({"leads": 190})
    assert not row["active"]
    small = FunnelSpec(name="paid", stages=["impressions", "clicks", "leads"], by=["campaign"],
                       min_volume=1_000_000)
    assert not diagnose({"leads": 10}, small)["sufficient"]


def test_segments_are_diagnosed_in_one_pass():
    both = pl.concat([frame({"leads": 50}, "brand"), frame({}, "search")])
    out = evaluate_funnel(SPEC, both, NOW, TZ).sort("campaign")
    assert out["campaign"].to_list() == ["brand", "search"]
    assert out["active"].to_list() == [True, False]


def test_funnel_bottleneck_alert_end_to_end(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    lines = ["date,campaign,cost,conversions,clicks,leads"]
    for i, d in enumerate(days(31)):
        leads = 40 if i >= 28 else 200
        lines.append(f"{d},brand,20000,{leads // 5},2000,{leads}")
    write(tmp_path / "ads.csv", "\n".join(lines) + "\n")
    write(tmp_path / "rules.yaml", "groups: []\n")
    config = csv_slack_config(tmp_path, httpserver.url_for(HOOK), extra="""
funnels:
  - {name: paid, stages: [clicks, leads, conversions], by: [campaign], owner: ppc}
""")
    text = (tmp_path / "kpimon.yaml").read_text().replace(
        "measures: [cost, conversions]", "measures: [cost, conversions, clicks, leads]")
    (tmp_path / "kpimon.yaml").write_text(text)
    app = Instance(config)
    app.cycle(NOW)
    [message] = [json.loads(r.data)["text"] for r, _ in httpserver.log]
    assert "FunnelBottleneck" in message
    assert "clicks → leads fell to 2.00% from 10.00% (-80%)" in message.replace("\u00a0", " ")
    assert "landing page (design, copy, form)" in message
    state = app.live.alert_state.filter(pl.col("rule") == "FunnelBottleneck")
    labels = json.loads(state["series"][0])
    assert labels == {"campaign": "brand", "funnel": "paid"}
