"""Synthetic marketing data at scale, generated column-wise (no Python loop per row)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from monitor.sources.base import TS, TS_DTYPE

CHANNELS = ["google_ads", "yandex_direct", "meta"]


def _noise(seed: int) -> pl.Expr:
    """A deterministic pseudo-random factor in [0.8, 1.2) per row."""
    return 0.8 + (pl.col("$i").hash(seed) % 10_000).cast(pl.Float64) / 25_000


def ads(series: int, periods: int, end: datetime, step: timedelta = timedelta(days=1),
        incident_share: float = 0.01) -> pl.DataFrame:
    """``series`` campaigns x ``periods`` periods ending before ``end``; 1 % have a CPA spike."""
    per_step = step / timedelta(days=1)
    ids = pl.DataFrame({"$s": pl.int_range(series, eager=True)})
    times = pl.DataFrame({TS: [end - step * (periods - k) for k in range(periods)]},
                         schema={TS: TS_DTYPE}).with_row_index("$t")
    frame = ids.join(times, how="cross").with_row_index("$i")
    spiking = (pl.col("$s") % int(1 / incident_share) == 0) & (pl.col("$t") >= periods - 3)
    clicks = (1000 * per_step * _noise(1)).round()
    return frame.select(
        TS,
        pl.lit("acc").alias("source"),
        pl.format("{}", pl.col("$s") % 3).replace_strict(
            {"0": CHANNELS[0], "1": CHANNELS[1], "2": CHANNELS[2]}).alias("channel"),
        pl.format("campaign_{}", pl.col("$s")).alias("campaign"),
        (clicks * 40 * _noise(2)).round().alias("impressions"),
        clicks.alias("clicks"),
        (clicks * 12 * _noise(3)).round(2).alias("cost"),
        pl.when(spiking).then((clicks * 0.005 * _noise(4)).round())
        .otherwise((clicks * 0.03 * _noise(4)).round()).alias("conversions"),
        (clicks * 0.03 * 2500 * _noise(5)).round(2).alias("revenue"),
        (clicks * 0.06 * _noise(6)).round().alias("leads"),
    ).with_columns(pl.struct("channel", "campaign").struct.json_encode().alias("labels"))


BENCH_NOW = datetime(2026, 3, 13, 12, 0, tzinfo=UTC)
