"""Roll-up of old hourly rows into local days, and retention, on both store backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from monitor.retention import maintain
from monitor.sources.base import TS, TS_DTYPE
from monitor.store import Store

NOW = datetime(2026, 3, 13, 12, tzinfo=UTC)
TZ = "Europe/Moscow"  # local days start at 21:00 UTC


def hourly(start: datetime, hours: int, campaign: str = "a") -> pl.DataFrame:
    return pl.DataFrame({
        TS: [start + timedelta(hours=h) for h in range(hours)],
        "campaign": [campaign] * hours,
        "clicks": [float(h + 1) for h in range(hours)],
        "cost": [None if h % 2 else 10.0 for h in range(hours)],
    }, schema={TS: TS_DTYPE, "campaign": pl.String, "clicks": pl.Float64, "cost": pl.Float64})


def test_old_hourly_rows_become_local_days_with_the_same_sums(store_url):
    store = Store(store_url)
    day_start = datetime(2026, 3, 1, 21, tzinfo=UTC)  # Moscow midnight of March 2
    store.replace_observations("ga", hourly(day_start, 48), NOW)  # March 2 and 3, local
    recent = hourly(NOW - timedelta(hours=5), 5, "b")
    store.replace_observations("ga", recent, NOW)
    result = maintain(store, NOW, TZ, retention=None, rollup_after=timedelta(days=7))
    assert (result.rolled_days, result.rolled_rows) == (2, 48)
    frame = store.load_observations(day_start - timedelta(days=1)).sort(TS)
    old = frame.filter(campaign="a")
    assert old[TS].to_list() == [day_start, day_start + timedelta(days=1)]
    assert old["clicks"].to_list() == [sum(range(1, 25)), sum(range(25, 49))]
    assert old["cost"].to_list() == [120.0, 120.0]  # nulls are absent values, not zeros
    assert frame.filter(campaign="b").height == 5  # younger than rollup_after: untouched
    # Idempotent: a second pass finds nothing to do.
    assert maintain(store, NOW, TZ, None, timedelta(days=7)).rolled_rows == 0


def test_daily_rows_are_not_touched_by_rollup(store_url):
    store = Store(store_url)
    days = pl.DataFrame({TS: [datetime(2026, 3, 1, 21, tzinfo=UTC)], "campaign": ["a"],
                         "clicks": [5.0]}, schema={TS: TS_DTYPE, "campaign": pl.String,
                                                   "clicks": pl.Float64})
    store.replace_observations("ads", days, NOW)
    assert maintain(store, NOW, TZ, None, timedelta(days=1)).rolled_rows == 0


def test_retention_deletes_old_samples_and_their_empty_series(store_url):
    store = Store(store_url)
    store.replace_observations("ads", hourly(NOW - timedelta(days=500), 3, "old"), NOW)
    store.replace_observations("ads", hourly(NOW - timedelta(days=2), 3, "new"), NOW)
    result = maintain(store, NOW, TZ, retention=timedelta(days=400), rollup_after=None)
    assert result.deleted == 3
    frame = store.load_observations(NOW - timedelta(days=1000))
    assert frame["campaign"].unique().to_list() == ["new"]
    with store.engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM series").scalar() == 1
