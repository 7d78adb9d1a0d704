"""Window functions, targets, tiers and hysteresis on hand-computed cases."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.alerts import advance, empty_state, replace_rules
from monitor.errors import ConfigError
from monitor.evaluate import evaluate
from monitor.kpis import Catalog
from monitor.sources.base import TS, TS_DTYPE
from tests.conftest import load_ruleset

UTC_TZ = ZoneInfo("UTC")
NOW = datetime(2026, 3, 29, 12, tzinfo=UTC)  # a Sunday; yesterday was Saturday the 28th


def daily(values: dict[str, list[float]], campaign: str = "a", days: int | None = None):
    """Rows for the `days` complete days before NOW, oldest first."""
    n = days or len(next(iter(values.values())))
    start = datetime(2026, 3, 29, tzinfo=UTC) - timedelta(days=n)
    return pl.DataFrame({
        TS: [start + timedelta(days=i) for i in range(n)],
        "campaign": [campaign] * n,
        **{k: [float(x) if x is not None else None for x in v] for k, v in values.items()},
    }, schema_overrides={TS: TS_DTYPE})


def run(tmp_path, expr: str, data: pl.DataFrame, extra: str = "", over: str = "1d"):
    rules = load_ruleset(tmp_path, f"""
groups:
  - name: g
    rules:
      - alert: R
        expr: {expr}
        over: {over}
        by: [campaign]
{extra}""")
    result = evaluate(rules.rules, data, NOW, UTC_TZ, Catalog())
    assert not result.errors, result.errors
    return result.candidates.row(0, named=True)


def test_prev_and_pct_change(tmp_path):
    # 14 days of cost; the last 7 sum to 70, the 7 before to 35.
    data = daily({"cost": [5] * 7 + [10] * 7, "conversions": [1] * 14})
    row = run(tmp_path, "pct_change(cost, 7d) > 50%", data, over="7d")
    assert row["value"] == pytest.approx(1.0) and row["active"]
    row = run(tmp_path, "prev(cpa, 7d) < 6", data, over="7d")
    assert row["value"] == pytest.approx(5.0)


def test_baseline_median_mean_and_same_weekday(tmp_path):
    # 28 days of unsubscribe rates before yesterday; Saturdays (same weekday as
    # yesterday) run at 3 per mille, other days at 1; yesterday at 9.
    delivered = [1000] * 29
    unsub = []
    for i in range(29):
        d = datetime(2026, 3, 29, tzinfo=UTC) - timedelta(days=29 - i)
        unsub.append(3 if d.weekday() == 5 else 1)
    unsub[-1] = 9
    data = daily({"delivered": delivered, "unsubscribes": unsub})
    row = run(tmp_path, "unsubscribe_rate > 2 * baseline(unsubscribe_rate, 28d)", data)
    assert row["value"] == pytest.approx(0.009) and row["active"]
    weekday = run(tmp_path, "unsubscribe_rate > 2 * baseline(unsubscribe_rate, 28d, "
                            "same_weekday)", data)
    assert weekday["active"]  # 0.009 > 2 * 0.003
    calm = run(tmp_path, "unsubscribe_rate > 4 * baseline(unsubscribe_rate, 28d, "
                         "same_weekday)", data)
    assert not calm["active"]  # 0.009 < 4 * 0.003: a normal Saturday is higher
    mean = run(tmp_path, "baseline(unsubscribe_rate, 28d, mean) > 0", data)
    assert mean["value"] == pytest.approx((4 * 0.003 + 24 * 0.001) / 28)


def test_robust_zscore(tmp_path):
    history = [10, 12, 11, 13, 9, 10, 12, 11, 10, 14, 9, 11, 12, 10]
    data = daily({"leads": [*history, 30]})
    row = run(tmp_path, "zscore(leads, 14d) > 3.5", data)
    median = 11.0
    mad = sorted(abs(x - median) for x in history)[7 - 1:7 + 1]
    mad = sum(mad) / 2  # the median of 14 deviations
    assert row["value"] == pytest.approx(0.6745 * (30 - median) / mad)
    assert row["active"]


def test_zscore_of_a_flat_history_has_no_value(tmp_path):
    data = daily({"leads": [10] * 14 + [30]})
    row = run(tmp_path, "zscore(leads, 14d) > 3.5", data)
    assert row["value"] is None and not row["active"]


def test_ewma_follows_the_recent_buckets(tmp_path):
    data = daily({"leads": [0, 0, 0, 10, 10]})
    row = run(tmp_path, "ewma(leads, 4d, 0.5) > 0", data)
    # Buckets oldest to newest: 0, 0, 0, 10 -> 0, 0, 0, 5 (alpha 0.5, no adjust).
    assert row["value"] == pytest.approx(5.0)


def test_wilson_bounds(tmp_path):
    data = daily({"clicks": [5], "impressions": [100]})
    low = run(tmp_path, "wilson_low(ctr) < 1", data)["value"]
    high = run(tmp_path, "wilson_high(ctr) < 1", data)["value"]
    z, n, p = 1.96, 100, 0.05
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)


def test_significant_needs_enough_evidence(tmp_path):
    # 28 days at 2 % conversion, then a day at 1 %: significant only with volume.
    small = daily({"conversions": [2] * 28 + [1], "clicks": [100] * 29})
    big = daily({"conversions": [200] * 28 + [100], "clicks": [10000] * 29})
    expr = "cr < 0.7 * baseline(cr, 28d) and significant(cr, 28d)"
    assert not run(tmp_path, expr, small)["active"]
    assert run(tmp_path, expr, big)["active"]


def test_share_of_the_total(tmp_path):
    a = daily({"cost": [30]}, "a")
    b = daily({"cost": [70]}, "b")
    rules = load_ruleset(tmp_path, """
groups:
  - name: g
    rules:
      - alert: R
        expr: share(cost) > 50%
        by: [campaign]
""")
    result = evaluate(rules.rules, pl.concat([a, b]), NOW, UTC_TZ, Catalog())
    got = {json.loads(s)["campaign"]: (v, act) for s, v, act in
           result.candidates.select("series", "value", "active").iter_rows()}
    assert got == {"a": (pytest.approx(0.3), False), "b": (pytest.approx(0.7), True)}


def test_targets_per_label_value(tmp_path):
    data = pl.concat([daily({"cost": [500], "conversions": [1]}, c)
                      for c in ("brand", "generic", "other")])
    rules = load_ruleset(tmp_path, """
groups:
  - name: g
    rules:
      - alert: R
        expr: cpa > target
        by: [campaign]
        targets:
          target: {by: campaign, values: {brand: 400, generic: 600}, default: 450}
""")
    result = evaluate(rules.rules, data, NOW, UTC_TZ, Catalog())
    active = {json.loads(s)["campaign"]: a for s, a in
              result.candidates.select("series", "active").iter_rows()}
    assert active == {"brand": True, "generic": False, "other": True}


def test_severity_tiers_are_exclusive(tmp_path):
    rules = load_ruleset(tmp_path, """
groups:
  - name: g
    rules:
      - alert: CPA
        tiers:
          warning: cpa > 1.2 * 500
          critical: cpa > 1.5 * 500
        by: [campaign]
""")
    assert [r.id for r in rules.rules] == ["CPA/warning", "CPA/critical"]
    data = pl.concat([daily({"cost": [650], "conversions": [1]}, "w"),
                      daily({"cost": [800], "conversions": [1]}, "c"),
                      daily({"cost": [100], "conversions": [1]}, "ok")])
    result = evaluate(rules.rules, data, NOW, UTC_TZ, Catalog())
    firing = {(r, json.loads(s)["campaign"]) for r, s, a in
              result.candidates.select("rule", "series", "active").iter_rows() if a}
    assert firing == {("CPA/warning", "w"), ("CPA/critical", "c")}
    assert rules.rules[1].labels["severity"] == "critical"


def test_resolve_threshold_gives_hysteresis(tmp_path):
    text = """
groups:
  - name: g
    rules:
      - alert: R
        expr: cpa > 650
        resolve: cpa < 600
        by: [campaign]
"""
    rules = load_ruleset(tmp_path, text)
    state = empty_state()
    seen = []
    for cost in (700, 630, 590):
        data = daily({"cost": [cost], "conversions": [1]})
        result = evaluate(rules.rules, data, NOW, UTC_TZ, Catalog())
        step = advance(state, result.candidates, rules.rules, NOW)
        state = replace_rules(state, ["R"], step.state)
        seen.append(state["state"].to_list())
    # Fires above 650, stays firing at 630 (above the resolve line), resolves under 600.
    assert seen == [["firing"], ["firing"], ["resolved"]]


@pytest.mark.parametrize(("behaviour", "expected"), [("ok", "resolved"),
                                                     ("keep_state", "firing"),
                                                     ("alert", "firing")])
def test_no_data_behaviour(tmp_path, behaviour, expected):
    rules = load_ruleset(tmp_path, f"""
groups:
  - name: g
    rules:
      - alert: R
        expr: cpa > 650
        by: [campaign]
        no_data: {behaviour}
""")
    data = daily({"cost": [700], "conversions": [1]})
    first = evaluate(rules.rules, data, NOW, UTC_TZ, Catalog())
    state = advance(empty_state(), first.candidates, rules.rules, NOW).state
    empty = evaluate(rules.rules, data.clear(), NOW, UTC_TZ, Catalog())
    step = advance(state, empty.candidates, rules.rules, NOW + timedelta(minutes=1))
    assert step.state["state"].to_list() == [expected]


@pytest.mark.parametrize(("expr", "message"), [
    ("prev(cpa) > 1", "prev() takes 2 arguments"),
    ("prev(cpa, 7) > 1", "expects a duration"),
    ("prev(cpa, 90m) > 1", "is not a whole number of days"),
    ("baseline(cpa, 28d, medain) > 1", "did you mean 'median'"),
    ("wilson_low(cpa) > 1", "needs a rate"),
    ("prev(prev(cpa, 1d), 1d) > 1", "cannot be nested"),
    ("baselin(cpa, 7d) > 1", "did you mean 'baseline'"),
    ("cpa > 7d", "only valid as a function argument"),
])
def test_function_errors_are_located(tmp_path, expr, message):
    with pytest.raises(ConfigError) as info:
        load_ruleset(tmp_path, f"""
groups:
  - name: g
    rules:
      - alert: R
        expr: "{expr}"
""")
    assert message in str(info.value)
    assert "rules.yaml:5:" in str(info.value)
