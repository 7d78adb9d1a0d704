"""Goals: periods, pacing and forecast on hand-computed cases, and config checks."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.goals import GoalSpec, evaluate_goals, pace
from monitor.kpis import Catalog
from monitor.sources.base import TS, TS_DTYPE
from tests.conftest import write


def test_periods():
    today = date(2026, 2, 11)  # a Wednesday
    assert GoalSpec(name="g", kpi="leads", target=1, period="week").bounds(today) == (
        date(2026, 2, 9), date(2026, 2, 15))
    assert GoalSpec(name="g", kpi="leads", target=1, period="month").bounds(today) == (
        date(2026, 2, 1), date(2026, 2, 28))
    assert GoalSpec(name="g", kpi="leads", target=1, period="quarter").bounds(today) == (
        date(2026, 1, 1), date(2026, 3, 31))
    explicit = GoalSpec(name="g", kpi="leads", target=1, start=date(2026, 1, 15),
                        deadline=date(2026, 4, 14))
    assert explicit.bounds(today) == (date(2026, 1, 15), date(2026, 4, 14))


def test_linear_pace_for_an_additive_measure():
    # 500 leads in a 30-day period; 12 days done with 150 leads.
    p = pace(500, 150, 12 / 30, additive=True)
    assert p.expected == pytest.approx(200)      # behind by 50
    assert p.forecast == pytest.approx(375)      # 150 / 0.4: the goal is at risk


def test_a_ratio_kpi_is_compared_as_a_level():
    p = pace(650, 712.5, 0.5, additive=False)
    assert (p.expected, p.forecast) == (650, 712.5)


def test_evaluate_goals_sums_the_period_to_date_with_a_label_filter():
    tz = ZoneInfo("UTC")
    days = [datetime(2026, 2, d, tzinfo=UTC) for d in range(1, 12)]
    frame = pl.DataFrame({
        TS: days * 2, "channel": ["google"] * 11 + ["meta"] * 11,
        "leads": [10.0] * 11 + [99.0] * 11, "cost": [1000.0] * 22,
        "conversions": [5.0] * 11 + [0.0] * 11,
    }, schema_overrides={TS: TS_DTYPE})
    goals = [GoalSpec(name="leads", kpi="leads", target=400, where={"channel": "google"}),
             GoalSpec(name="cpa", kpi="cpa", target=250, where={"channel": "google"})]
    now = datetime(2026, 2, 11, 15, tzinfo=UTC)  # 10 complete days of February's 28
    out = {r["goal"]: r for r in evaluate_goals(goals, frame, now, tz, Catalog()).to_dicts()}
    assert out["leads"]["value"] == 100  # the 11th is not complete yet
    assert out["leads"]["elapsed"] == pytest.approx(10 / 28)
    assert out["leads"]["expected"] == pytest.approx(400 * 10 / 28)
    assert out["leads"]["forecast"] == pytest.approx(280)
    assert out["cpa"]["value"] == pytest.approx(200)
    assert out["cpa"]["expected"] == 250


def test_goal_config_errors_and_the_five_kpi_warning(tmp_path):
    config = write(tmp_path / "kpimon.yaml", """
        rule_files: []
        goals:
          - {name: g, kpi: leds, target: 100}
    """)
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "kpimon.yaml:3:" in result.stderr and "did you mean 'leads'" in result.stderr
    config.write_text("rule_files: []\ngoals:\n  - {name: g, kpi: leads, target: 100,\n"
                      "     supporting: [cpa, cpl, cr, ctr, roas]}\n")
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "tracks 6 KPIs" in result.stderr


def test_dates_must_come_in_pairs():
    with pytest.raises(ValueError, match="both start and deadline"):
        GoalSpec(name="g", kpi="leads", target=1, start=date(2026, 1, 1))
    assert GoalSpec(name="g", kpi="leads", target=1).bounds(date(2026, 12, 31))[1] == date(
        2026, 12, 31)
