"""The data's life in the store: roll-up of old hourly rows, then retention.

Roll-up sums a source's hourly rows older than ``store.rollup_after`` into one
row per local day (the day the rules see), per series; measures are additive,
so every KPI computed over a day is unchanged. Retention deletes samples older
than ``store.retention`` and the series left with none. Both work a day at a
time in their own transactions, so a large store is never locked for long and
an interruption leaves every day either fully rolled up or untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import sqlalchemy as sa

from monitor.store import Store, from_micros, samples, series, to_micros

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Maintenance:
    deleted: int = 0  # samples removed by retention
    rolled_days: int = 0  # (source) days rolled up
    rolled_rows: int = 0  # hourly rows replaced by daily ones


def maintain(store: Store, now: datetime, tz: str, retention: timedelta | None,
             rollup_after: timedelta | None, scan: timedelta | None = None) -> Maintenance:
    """Roll up, then apply retention. ``scan`` limits how far back roll-up looks
    (the daemon scans everything once at start, then the last few days)."""
    rolled_days = rolled_rows = 0
    if rollup_after is not None:
        cutoff = local_midnight(now - rollup_after, tz)
        oldest = store_oldest(store)
        first = cutoff - scan if scan is not None else oldest
        if first is not None and oldest is not None:
            day = local_midnight(max(first, oldest), tz)
            while day < cutoff:
                following = local_midnight(day + timedelta(hours=36), tz)
                rows = rollup_day(store, day, following, now)
                rolled_rows += rows
                rolled_days += rows > 0
                day = following
    deleted = 0
    if retention is not None:
        deleted = delete_before(store, now - retention)
    if deleted or rolled_rows:
        log.info("store: %d hourly rows rolled up into days (%d days), %d old samples deleted",
                 rolled_rows, rolled_days, deleted)
    return Maintenance(deleted, rolled_days, rolled_rows)


def local_midnight(t: datetime, tz: str) -> datetime:
    local = t.astimezone(ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def store_oldest(store: Store) -> datetime | None:
    with store.engine.connect() as c:
        oldest = c.execute(sa.select(sa.func.min(samples.c.ts))).scalar()
    return from_micros(oldest)


def rollup_day(store: Store, day: datetime, following: datetime, now: datetime) -> int:
    """Sum one local day's sub-daily rows into a row at local midnight; returns rows replaced."""
    start, end = to_micros(day), to_micros(following)
    in_day = (samples.c.ts >= start) & (samples.c.ts < end)
    with store.transaction() as conn:
        # Only series that have a row off midnight need rolling; daily data is left alone.
        hourly = sa.select(samples.c.series_id).where(in_day, samples.c.ts != start).distinct()
        rows = conn.execute(sa.select(samples.c.series_id, samples.c.measures)
                            .where(in_day, samples.c.series_id.in_(hourly))).all()
        if not rows:
            return 0
        frame = pl.DataFrame(rows, schema={"series_id": pl.Int64, "measures": pl.String},
                             orient="row")
        measures = frame["measures"].str.json_decode(infer_schema_length=None).struct.unnest()
        names = measures.columns
        summed = (pl.concat([frame.select("series_id"), measures], how="horizontal")
                  .group_by("series_id", maintain_order=True)
                  # A measure no row had stays absent rather than becoming 0.
                  .agg(pl.when(pl.col(m).count() > 0).then(pl.col(m).sum()).alias(m)
                       for m in names))
        daily = summed.select(
            pl.lit(start, dtype=pl.Int64).alias("ts"), "series_id",
            pl.struct(names).struct.json_encode().alias("measures"),
            pl.lit(to_micros(now), dtype=pl.Int64).alias("updated_at"))
        conn.execute(sa.delete(samples).where(
            in_day, samples.c.series_id.in_(daily["series_id"].to_list())))
        store.bulk_insert(conn, samples, daily.rows())
    return len(rows)


def delete_before(store: Store, cutoff: datetime) -> int:
    """Delete samples older than ``cutoff`` and the series left without samples."""
    with store.transaction() as conn:
        deleted = conn.execute(sa.delete(samples).where(samples.c.ts < to_micros(cutoff)))
        if deleted.rowcount:
            conn.execute(sa.delete(series).where(~sa.exists().where(
                samples.c.series_id == series.c.id)))
    return deleted.rowcount or 0

