"""The KPI catalog and the engine's aggregation: ratio of sums per window and group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.evaluate import aggregate, window_range
from monitor.kpis import BUILTIN, Catalog
from monitor.sources.base import TS, TS_DTYPE

REQUIRED = {"ctr", "cpc", "cpm", "cr", "cpa", "roas", "roi", "cpl", "open_rate", "click_rate",
            "unsubscribe_rate"}


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


def test_cpa_is_a_ratio_of_sums_across_days_and_campaigns():
    data = frame([
        (day(1), "google", "a", 1000.0, 10.0),   # CPA 100
        (day(2), "google", "a", 1000.0, 1.0),    # CPA 1000
        (day(1), "google", "b", 500.0, 0.0),     # no conversions: no CPA of its own
        (day(2), "yandex", "c", 300.0, 3.0),
    ])
    agg = aggregate(data, day(1), day(3), ("channel",), {"cost", "conversions"})
    cpa = agg.with_columns(Catalog().column("cpa").alias("cpa")).sort("channel")
    # google: (1000 + 1000 + 500) / (10 + 1 + 0), not the mean of daily ratios (550).
    assert cpa["cpa"].to_list() == [pytest.approx(2500 / 11), pytest.approx(100.0)]


def test_zero_denominator_gives_null_and_rows_without_the_label_are_left_out():
    data = frame([
        (day(1), "google", "a", 100.0, 0.0),
        (day(1), None, None, 999.0, 1.0),  # e.g. an email row: no channel label
    ])
    agg = aggregate(data, day(1), day(2), ("channel",), {"cost", "conversions"})
    out = agg.with_columns(Catalog().column("cpa").alias("cpa"))
    assert out["channel"].to_list() == ["google"]
    assert out["cpa"].to_list() == [None]


def test_window_excludes_rows_outside_the_range_and_sums_missing_measures_as_null():
    data = frame([(day(1), "g", "a", 10.0, 1.0), (day(5), "g", "a", 99.0, 1.0)])
    agg = aggregate(data, day(1), day(2), ("channel",), {"cost", "revenue"})
    assert agg["cost"].to_list() == [10.0]
    assert agg["revenue"].to_list() == [None]


def test_day_windows_end_at_local_midnight_and_count_calendar_days_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    # DST began on 2026-03-29 in Berlin: that local day has 23 hours.
    now = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)
    start, end = window_range(now, timedelta(days=2), berlin)
    assert end == datetime(2026, 3, 30, 0, 0, tzinfo=berlin)
    assert start == datetime(2026, 3, 28, 0, 0, tzinfo=berlin)
    assert end - start == timedelta(hours=47)
    moscow = ZoneInfo("Europe/Moscow")
    start, end = window_range(datetime(2026, 3, 13, 22, 30, tzinfo=UTC), timedelta(days=1),
                              moscow)
    # 22:30 UTC is already 01:30 on the 14th in Moscow: yesterday is the 13th.
    assert (start, end) == (datetime(2026, 3, 13, tzinfo=moscow),
                            datetime(2026, 3, 14, tzinfo=moscow))


def test_hour_and_sliding_windows():
    now = datetime(2026, 3, 13, 12, 42, 10, tzinfo=UTC)
    assert window_range(now, timedelta(hours=6), ZoneInfo("UTC")) == (
        datetime(2026, 3, 13, 6, tzinfo=UTC), datetime(2026, 3, 13, 12, tzinfo=UTC))
    assert window_range(now, timedelta(minutes=30), ZoneInfo("UTC")) == (
        now - timedelta(minutes=30), now)
