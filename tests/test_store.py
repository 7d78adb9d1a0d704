"""The SQLite store and the window: upserts overwrite, restarts restore."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from monitor.alerts import STATE_SCHEMA
from monitor.sources.base import TS, TS_DTYPE
from monitor.store import Store
from monitor.window import Window
from tests.conftest import NOW


def obs(rows):
    return pl.DataFrame(rows, schema={TS: TS_DTYPE, "campaign": pl.String,
                                      "cost": pl.Float64, "conversions": pl.Float64},
                        orient="row")


def day(n):
    return NOW - timedelta(days=n)


def test_reread_overwrites_restated_values(store_url):
    store = Store(store_url)
    store.replace_observations("ads", obs([(day(2), "a", 100.0, 1.0), (day(1), "a", 100.0, 2.0)]),
                              NOW)
    # Conversions for day 1 are restated upwards; day 2 is not re-read.
    store.replace_observations("ads", obs([(day(1), "a", 100.0, 5.0)]), NOW)
    frame = store.load_observations(day(10)).sort(TS)
    assert frame["conversions"].to_list() == [1.0, 5.0]
    assert frame.height == 2
    store.close()


def test_same_labels_from_another_source_are_separate(store_url):
    store = Store(store_url)
    store.replace_observations("a", obs([(day(1), "x", 1.0, 1.0)]), NOW)
    store.replace_observations("b", obs([(day(1), "x", 2.0, 1.0)]), NOW)
    assert sorted(store.load_observations(day(5))["cost"].to_list()) == [1.0, 2.0]


def test_data_survives_reopening_the_store(store_url):
    path = store_url
    store = Store(path)
    store.replace_observations("ads", obs([(day(1), "a", 100.0, 2.0)]), NOW)
    store.close()
    again = Store(path)
    frame = again.load_observations(day(3))
    assert frame.select("campaign", "cost", "conversions").rows() == [("a", 100.0, 2.0)]
    assert frame[TS].to_list() == [day(1)]


def test_alert_state_round_trips(store_url):
    store = Store(store_url)
    state = pl.DataFrame([("R", '{"c":"a"}', "firing", 1, 2, None, 3, 4, 1.5, '{"cpa":1.5}')],
                         schema=STATE_SCHEMA, orient="row")
    with store.transaction() as conn:
        store.replace_alert_state(["R"], state, conn)
    assert store.load_alert_state().equals(state)
    with store.transaction() as conn:
        store.replace_alert_state(["R"], state.clear(), conn)
    assert store.load_alert_state().height == 0


def test_window_merge_replaces_by_key_like_the_store():
    w = Window.empty().merge("ads", obs([(day(2), "a", 1.0, 1.0), (day(1), "a", 1.0, 1.0)]))
    w = w.merge("ads", obs([(day(1), "a", 1.0, 9.0), (day(1), "b", 3.0, 0.0)]))
    got = w.frame.sort(TS, "campaign").select(TS, "campaign", "conversions").rows()
    assert got == [(day(2), "a", 1.0), (day(1), "a", 9.0), (day(1), "b", 0.0)]
    assert w.trim(day(1)).frame.height == 2


def test_window_merges_sources_with_different_columns():
    email = pl.DataFrame({TS: [day(1)], "list": ["promo"], "delivered": [1000.0]},
                         schema={TS: TS_DTYPE, "list": pl.String, "delivered": pl.Float64})
    w = Window.empty().merge("ads", obs([(day(1), "a", 1.0, 1.0)])).merge("mail", email)
    assert w.frame.height == 2
    assert {"campaign", "list"} <= w.labels
    assert {"cost", "delivered"} <= w.measures


def test_a_segment_gone_from_a_reread_period_is_removed_in_store_and_window(store_url):
    store = Store(store_url)
    first = obs([(day(2), "a", 1.0, 1.0), (day(1), "a", 1.0, 1.0), (day(1), "b", 2.0, 2.0)])
    store.replace_observations("ads", first, NOW)
    reread = obs([(day(1), "a", 1.0, 3.0)])  # campaign b was deleted upstream
    store.replace_observations("ads", reread, NOW)
    window = Window.empty().merge("ads", first).merge("ads", reread)
    stored = store.load_observations(day(10)).sort(TS).select(TS, "campaign", "conversions")
    assert stored.rows() == [(day(2), "a", 1.0), (day(1), "a", 3.0)]
    assert window.frame.sort(TS).select(TS, "campaign", "conversions").rows() == stored.rows()


def test_a_million_row_poll_round_trips(store_url):
    store = Store(store_url)
    frame = pl.DataFrame({
        TS: pl.datetime_range(day(100), day(1), "1d", eager=True, time_zone="UTC")
        .cast(TS_DTYPE).to_list() * 100,
    }).with_row_index("i").select(
        TS, pl.format("c{}", pl.col("i") // 100).alias("campaign"),
        pl.col("i").cast(pl.Float64).alias("cost"), pl.lit(1.0).alias("conversions"))
    assert store.replace_observations("ads", frame, NOW) == frame.height
    loaded = store.load_observations(day(200))
    assert loaded.height == frame.height
    assert loaded["cost"].sum() == frame["cost"].sum()
