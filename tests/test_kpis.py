"""The KPI catalog and the engine's aggregation: ratio of sums per window and group."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.evaluate import evaluate
from monitor.kpis import BUILTIN, Catalog
from monitor.periods import WindowSpec, period_start
from monitor.sources.base import TS, TS_DTYPE
from tests.conftest import load_ruleset

REQUIRED = {"ctr", "cpc", "cpm", "cr", "cpa", "roas", "roi", "cpl", "open_rate", "click_rate",
            "unsubscribe_rate"}
UTC_TZ = ZoneInfo("UTC")


def test_catalog_covers_the_domain_kpis():
    assert {k.name for k in BUILTIN} >= REQUIRED
    catalog = Catalog()
    assert catalog["cpa"].measures == {"cost", "conversions"}
    assert catalog["roi"].measures == {"revenue", "cost"}


def frame(rows):
    return pl.DataFrame(rows, schema={TS: TS_DTYPE, "channel": pl.String,
                                      "campaign": pl.String, "cost": pl.Float64,
                                      "conversions": pl.Float64}, orient="row")


def day(n):
    return datetime(2026, 3, n, tzinfo=UTC)


def values(tmp_path, rule_yaml, data, now=None):
    rules = load_ruleset(tmp_path, rule_yaml)
    result = evaluate(rules.rules, data, now or day(3), UTC_TZ, Catalog())
    assert not result.errors, result.errors
    return {tuple(json.loads(s).values()): v
            for s, v in result.candidates.select("series", "value").iter_rows()}


BY_CHANNEL = """
groups:
  - name: g
    rules:
      - alert: CPA
        expr: cpa > 0
        over: 2d
        by: [channel]
"""


def test_cpa_is_a_ratio_of_sums_across_days_and_campaigns(tmp_path):
    data = frame([
        (day(1), "google", "a", 1000.0, 10.0),   # CPA 100
        (day(2), "google", "a", 1000.0, 1.0),    # CPA 1000
        (day(1), "google", "b", 500.0, 0.0),     # no conversions: no CPA of its own
        (day(2), "yandex", "c", 300.0, 3.0),
        (day(3), "yandex", "c", 999.0, 1.0),     # today: outside a window of complete days
    ])
    got = values(tmp_path, BY_CHANNEL, data)
    # google: (1000 + 1000 + 500) / (10 + 1 + 0), not the mean of daily ratios (550).
    assert got == {("google",): pytest.approx(2500 / 11), ("yandex",): pytest.approx(100.0)}


def test_zero_denominator_gives_null_and_rows_without_the_label_are_left_out(tmp_path):
    data = frame([
        (day(1), "google", "a", 100.0, 0.0),
        (day(1), None, None, 999.0, 1.0),  # e.g. an email row: no channel label
    ])
    assert values(tmp_path, BY_CHANNEL, data) == {("google",): None}


def test_a_measure_no_row_has_is_missing_not_zero(tmp_path):
    rules = BY_CHANNEL.replace("cpa > 0", "roas < 2")
    data = frame([(day(1), "google", "a", 100.0, 1.0)])  # no revenue column at all
    assert values(tmp_path, rules, data) == {("google",): None}


def test_account_total_without_by(tmp_path):
    rules = BY_CHANNEL.replace("by: [channel]", "by: []")
    data = frame([(day(1), "google", "a", 100.0, 1.0), (day(2), None, None, 300.0, 1.0)])
    assert values(tmp_path, rules, data) == {(): 200.0}


def test_day_windows_end_at_local_midnight_and_count_calendar_days_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    # DST began on 2026-03-29 in Berlin: that local day has 23 hours.
    now = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)
    start, end = WindowSpec.parse("2d").resolve(now, berlin)
    assert period_start(end, berlin, WindowSpec.parse("2d").unit) == datetime(
        2026, 3, 30, 0, 0, tzinfo=berlin)
    assert period_start(start, berlin, WindowSpec.parse("2d").unit) == datetime(
        2026, 3, 28, 0, 0, tzinfo=berlin)
    moscow = ZoneInfo("Europe/Moscow")
    spec = WindowSpec.parse("1d")
    start, end = spec.resolve(datetime(2026, 3, 13, 22, 30, tzinfo=UTC), moscow)
    # 22:30 UTC is already 01:30 on the 14th in Moscow: yesterday is the 13th.
    assert period_start(start, moscow, spec.unit) == datetime(2026, 3, 13, tzinfo=moscow)


@pytest.mark.parametrize(("over", "offset", "first", "last"), [
    ("7d", None, datetime(2026, 3, 6), datetime(2026, 3, 12)),
    ("1d", "1d", datetime(2026, 3, 11), datetime(2026, 3, 11)),
    ("today", None, datetime(2026, 3, 13), datetime(2026, 3, 13)),
    ("wtd", None, datetime(2026, 3, 9), datetime(2026, 3, 13)),     # Monday to Friday
    ("mtd", None, datetime(2026, 3, 1), datetime(2026, 3, 13)),
    ("qtd", None, datetime(2026, 1, 1), datetime(2026, 3, 13)),
])
def test_window_forms(over, offset, first, last):
    now = datetime(2026, 3, 13, 12, 0, tzinfo=UTC)  # a Friday
    start, end = WindowSpec.parse(over, offset).resolve(now, UTC_TZ)
    assert (start, end - 1) == (first.toordinal(), last.toordinal())


def test_hour_windows_end_at_the_last_full_hour():
    spec = WindowSpec.parse("6h")
    now = datetime(2026, 3, 13, 12, 42, 10, tzinfo=UTC)
    start, end = spec.resolve(now, UTC_TZ)
    assert period_start(end, UTC_TZ, spec.unit) == datetime(2026, 3, 13, 12, tzinfo=UTC)
    assert end - start == 6


@pytest.mark.parametrize("bad", ["90m", "-2d", "soon", "0d"])
def test_window_errors(bad):
    with pytest.raises(ValueError):
        WindowSpec.parse(bad)
