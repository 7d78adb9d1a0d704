"""Weekday-weighted pacing, the forecast interval and GoalAtRisk, on hand-computed cases."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.goals import GoalSpec, evaluate_goals, weekday_profile, weighted_pace
from monitor.kpis import Catalog
from monitor.sources.base import TS, TS_DTYPE
from monitor.templating import Formatter
from tests.conftest import write
from tests.test_pipeline import HOOK, Instance, csv_slack_config

WEIGHTS = [1.2, 1.2, 1.2, 1.0, 1.0, 0.7, 0.7]  # Monday..Sunday, sum 7


def test_weighted_pace_and_its_interval_by_hand():
    # A week's target of 700; Monday to Wednesday done with 300.
    p = weighted_pace(700, 300, WEIGHTS[:3], WEIGHTS[3:], cv=0.1)
    assert p.elapsed == pytest.approx(3.6 / 7)
    assert p.expected == pytest.approx(360)                 # 700 x 3.6 / 7
    rate = 300 / 3.6                                         # per unit of weight
    assert p.forecast == pytest.approx(300 + rate * 3.4)     # 583.33
    days_left = rate * 0.1 * math.sqrt(1 + 1 + 0.49 + 0.49)  # 14.39
    run_rate = rate * 3.4 * 0.1 / math.sqrt(3)               # 16.36
    spread = 1.645 * math.hypot(days_left, run_rate)         # 35.83
    assert (p.low, p.high) == pytest.approx((p.forecast - spread, p.forecast + spread))
    assert p.low == pytest.approx(547.5, abs=0.1) and p.high == pytest.approx(619.2, abs=0.1)


def test_the_interval_never_goes_below_what_is_already_done():
    p = weighted_pace(100, 90, [1.0] * 6, [1.0], cv=5.0)
    assert p.low == 90


def test_a_flat_pace_is_the_linear_pace():
    p = weighted_pace(500, 150, [1.0] * 12, [1.0] * 18, cv=None)
    assert (p.expected, p.forecast) == (pytest.approx(200), pytest.approx(375))


def daily(values_by_weekday: list[float], weeks: int, first: date) -> pl.DataFrame:
    days = [first + timedelta(days=i) for i in range(7 * weeks)]
    return pl.DataFrame({"day": days, "value": [values_by_weekday[d.weekday()] for d in days]})


def test_the_weekday_profile_is_learned_from_history():
    weights, cv = weekday_profile(daily([100] * 5 + [50] * 2, 8, date(2026, 1, 5)))
    mean = (5 * 100 + 2 * 50) / 7
    assert weights == pytest.approx([100 / mean] * 5 + [50 / mean] * 2)
    assert cv == pytest.approx(0)
    assert weekday_profile(daily([1] * 7, 1, date(2026, 1, 5))) is None  # too short


def test_evaluate_goals_paces_by_weekday_and_flags_the_risk():
    tz = ZoneInfo("UTC")
    history_start = date(2026, 1, 5)  # a Monday; eight weeks before March 2
    days = [history_start + timedelta(days=i) for i in range(8 * 7 + 3)]
    leads = [100.0 if d.weekday() < 5 else 50.0 for d in days]
    leads[-3:] = [60.0, 60.0, 60.0]  # Mon..Wed of the goal's week: a weak start
    frame = pl.DataFrame({TS: [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in days],
                          "leads": leads}, schema_overrides={TS: TS_DTYPE})
    goal = GoalSpec(name="leads_week", kpi="leads", target=600, period="week",
                    pacing="weekday", owner="growth")
    now = datetime(2026, 3, 5, 12, tzinfo=UTC)  # Thursday: three days done
    [row] = evaluate_goals([goal], frame, now, tz, Catalog()).to_dicts()
    mean = 600 / 7
    done, left = 3 * 100 / mean, (2 * 100 + 2 * 50) / mean
    assert row["pacing"] == "weekday" and row["days_done"] == 3
    assert row["value"] == 180
    assert row["expected"] == pytest.approx(600 * done / (done + left))   # 300
    assert row["forecast"] == pytest.approx(180 + 180 / done * left)      # 360
    assert row["at_risk"] is True  # 360 < 0.9 x 600
    linear = evaluate_goals([goal.model_copy(update={"pacing": "linear"})], frame, now, tz,
                            Catalog()).to_dicts()[0]
    assert linear["expected"] == pytest.approx(600 * 3 / 7)


def test_a_lower_is_better_kpi_is_at_risk_above_its_target():
    tz = ZoneInfo("UTC")
    frame = pl.DataFrame({TS: [datetime(2026, 3, d, tzinfo=UTC) for d in range(1, 8)],
                          "cost": [6000.0] * 7, "conversions": [10.0] * 7},
                         schema_overrides={TS: TS_DTYPE})
    now = datetime(2026, 3, 8, 1, tzinfo=UTC)
    goals = [GoalSpec(name="cpa", kpi="cpa", target=450),
             GoalSpec(name="cpa_ok", kpi="cpa", target=580)]  # 600 <= 580 / 0.9 = 644
    out = {r["goal"]: r for r in evaluate_goals(goals, frame, now, tz, Catalog()).to_dicts()}
    assert out["cpa"]["value"] == 600 and out["cpa"]["at_risk"] is True
    assert out["cpa_ok"]["at_risk"] is False


@pytest.mark.parametrize(("locale", "value", "target", "unit", "text"), [
    ("ru_RU", 0.032, 0.04, "ratio", "3,2 % при плане 4,0 %: на 0,8 п. п. ниже плана"),
    ("en_US", 0.032, 0.04, "ratio", "3.2% against a plan of 4.0%: 0.8 pp below plan"),
    ("ru_RU", 712, 450, "money", "712 ₽ при плане 450 ₽: на 58 % выше плана"),
    ("en_US", 18200, 25000, "count", "18,200 against a plan of 25,000: 27% below plan"),
])
def test_plan_against_fact_never_confuses_points_and_percent(locale, value, target, unit,
                                                             text):
    assert Formatter(locale).plan_fact(value, target, unit).replace("\u00a0", " ") \
        == text.replace("\u00a0", " ")


def test_goal_at_risk_fires_through_the_routes_with_plan_and_fact(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    rows = "".join(f"2026-03-{d:02d},brand,1000,{2 if d > 1 else 1}\n" for d in range(1, 13))
    write(tmp_path / "ads.csv", "date,campaign,cost,conversions\n" + rows)
    write(tmp_path / "rules.yaml", "groups: []\n")
    config = csv_slack_config(
        tmp_path, httpserver.url_for(HOOK),
        route="{receiver: slack, group_by: [alertname, goal]}", extra="""
goals:
  - {name: march_conversions, kpi: conversions, target: 100, period: month, owner: growth}
""")
    app = Instance(config)
    app.cycle(datetime(2026, 3, 13, 12, tzinfo=UTC))
    [text] = [json.loads(r.data)["text"] for r, _ in httpserver.log]
    # 23 conversions in 12 of 31 days: forecast 59.4 against a plan of 100.
    assert "GoalAtRisk" in text and "march_conversions" in text
    assert "59 against a plan of 100: 41% below plan" in text.replace("\u00a0", " ")
    state = app.live.alert_state.filter(pl.col("rule") == "GoalAtRisk")
    assert state["state"].to_list() == ["firing"]
