"""The source contract: a poll returns observations as a polars frame.

An observation frame has a ``ts`` column (period start, UTC, microseconds), one
String column per dimension label, and one Float64 column per additive measure
(impressions, clicks, cost, conversions…). Sources return raw counts and sums,
never precomputed ratios, so KPIs can be re-aggregated at any level.
"""

from __future__ import annotations

import glob
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import polars as pl
from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.cron import check_cron
from monitor.durations import Duration
from monitor.errors import SourceError

TS = "ts"
TS_DTYPE = pl.Datetime("us", "UTC")
RESERVED = frozenset({TS, "source"})


class SourceConfig(BaseModel):
    """Settings every source type shares."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    type: str
    interval: Duration = Field(default="5m", description="How often to poll (unless "
                               "schedule is set).")
    schedule: str | None = Field(default=None, description="A cron expression (minute hour "
                                 "day month weekday, in global.timezone) to poll on instead of "
                                 "the interval, e.g. '15 */2 * * *'.")
    offset: Duration = Field(default="0s", description="Read up to now minus this: for "
                             "platforms whose latest figures are still being counted.")
    lookback: Duration = Field(
        default="2d", description="Window re-read on every poll; restated values overwrite."
    )
    backfill: Duration = Field(default="56d", description="History read on the first poll.")
    granularity: Literal["day", "hour"] = "day"

    _cron = field_validator("schedule")(check_cron)

    def trigger(self, timezone: str) -> CronTrigger | None:
        return CronTrigger.from_crontab(self.schedule, timezone=timezone) if self.schedule \
            else None

    def period(self, timezone: str, now: datetime) -> timedelta:
        """The usual time between polls: the interval, or the cron's gap after ``now``."""
        trigger = self.trigger(timezone)
        if trigger is None:
            return self.interval
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
        return second - first if first and second else self.interval


class Source(Protocol):
    """A configured source; ``poll`` must not keep state that a restart would lose."""

    config_model: ClassVar[type[SourceConfig]]
    name: str

    @property
    def dimensions(self) -> tuple[str, ...]: ...

    @property
    def measures(self) -> tuple[str, ...]: ...

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Observations with ``start <= ts < end``."""
        ...


def empty_frame(dimensions: tuple[str, ...], measures: tuple[str, ...]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {TS: TS_DTYPE}
    schema |= dict.fromkeys(dimensions, pl.String())
    schema |= dict.fromkeys(measures, pl.Float64())
    return pl.DataFrame(schema=schema)


def poll_range(now: datetime, lookback: timedelta, last_success: datetime | None,
               backfill: timedelta) -> tuple[datetime, datetime]:
    """The range to read: the backfill on first start, else the lookback window.

    After an outage longer than the lookback, the gap since the last success is
    read too, so nothing is silently skipped.
    """
    if last_success is None:
        return now - backfill, now
    start = min(now - lookback, last_success - lookback)
    return max(start, now - backfill), now


def label_columns(frame: pl.DataFrame) -> list[str]:
    """The dimension label columns of an observation frame, sorted."""
    return sorted(c for c, t in frame.schema.items()
                  if t == pl.String and c not in RESERVED and c != "labels")


def measure_columns(frame: pl.DataFrame) -> list[str]:
    return sorted(c for c, t in frame.schema.items() if t.is_numeric())


def label_key(columns: list[str]) -> pl.Expr:
    """Canonical JSON of a row's labels: the series identity in the store and the window."""
    return pl.struct(columns).struct.json_encode() if columns else pl.lit("{}")


def matching_files(pattern: str, base_dir: Path, source: str) -> list[str]:
    """Files matching ``pattern`` (relative to the config's folder), sorted; one at least."""
    full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
    files = sorted(glob.glob(full))
    if not files:
        raise SourceError(f"source {source!r}: no file matches {pattern!r}")
    return files
