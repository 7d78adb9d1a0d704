"""Rule windows as ranges of whole periods: days in the global timezone, or hours.

Every observation gets an integer period index (a local calendar day's ordinal,
or hours since the epoch), so a window is a half-open range of indexes and
"the same weekday four weeks ago" is plain arithmetic. Day windows follow the
timezone and DST: a day is a local calendar day, whatever its length.

Window forms (``over:``):
  ``7d`` / ``2w``  the last N complete days (ending at local midnight)
  ``6h``           the last N complete hours
  ``today``        the current local day so far
  ``wtd``, ``mtd``, ``qtd``  week (from Monday), month or quarter to date
``offset`` moves the window back (``offset: 1d`` skips yesterday's late data).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import polars as pl

from monitor.durations import format_duration, parse_duration
from monitor.sources.base import TS

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
TO_DATE = ("today", "wtd", "mtd", "qtd")


class Unit(StrEnum):
    DAY = "day"
    HOUR = "hour"


@dataclass(frozen=True)
class WindowSpec:
    """What a rule's ``over`` and ``offset`` say, independent of when it runs."""

    form: str  # "trailing" or one of TO_DATE
    length: int  # in units, for trailing windows
    unit: Unit
    offset: int = 0  # in units

    @classmethod
    def parse(cls, over: str | timedelta, offset: str | timedelta | None = None) -> WindowSpec:
        off = parse_duration(offset) if offset is not None else timedelta(0)
        if isinstance(over, str) and over.strip().lower() in TO_DATE:
            unit = Unit.DAY
            if off % DAY:
                raise ValueError(f"offset of a {over} window must be whole days")
            return cls(over.strip().lower(), 0, unit, off // DAY)
        span = parse_duration(over)
        if span <= timedelta(0):
            raise ValueError("over must be positive")
        if span % DAY == timedelta(0) and off % DAY == timedelta(0):
            return cls("trailing", span // DAY, Unit.DAY, off // DAY)
        if span % HOUR == timedelta(0) and off % HOUR == timedelta(0):
            return cls("trailing", span // HOUR, Unit.HOUR, off // HOUR)
        raise ValueError(f"over {over!r} and offset must be whole hours or whole days")

    @property
    def label(self) -> str:
        """How the window is named in metrics and messages: 7d, 6h, mtd."""
        if self.form != "trailing":
            return self.form
        return f"{self.length}{'d' if self.unit is Unit.DAY else 'h'}"

    @property
    def unit_span(self) -> timedelta:
        return DAY if self.unit is Unit.DAY else HOUR

    def units(self, text: str | timedelta) -> int:
        """A duration argument (``7d``) in this window's units; must divide evenly."""
        span = parse_duration(text)
        if span % self.unit_span:
            raise ValueError(f"{format_duration(span)} is not a whole number of "
                             f"{self.unit.value}s")
        return span // self.unit_span

    def resolve(self, now: datetime, tz: ZoneInfo) -> tuple[int, int]:
        """The half-open range [start, end) of period indexes at ``now``."""
        current = period_index(now, tz, self.unit)
        if self.form == "trailing":
            end = current - self.offset
            return end - self.length, end
        today = now.astimezone(tz).date()
        first = {
            "today": today,
            "wtd": today - timedelta(days=today.weekday()),
            "mtd": today.replace(day=1),
            "qtd": date(today.year, 3 * ((today.month - 1) // 3) + 1, 1),
        }[self.form]
        end = current + 1 - self.offset  # to date: today's partial day included
        return first.toordinal() - self.offset, end


def period_index(t: datetime, tz: ZoneInfo, unit: Unit) -> int:
    if unit is Unit.DAY:
        return t.astimezone(tz).date().toordinal()
    return int(t.astimezone(UTC).timestamp() // 3600)


def period_start(index: int, tz: ZoneInfo, unit: Unit) -> datetime:
    """The UTC instant at which a period index begins."""
    if unit is Unit.DAY:
        return datetime.combine(date.fromordinal(index), datetime.min.time(), tz).astimezone(UTC)
    return datetime.fromtimestamp(index * 3600, UTC)


# date.toordinal() of 1970-01-01: lets polars compute ordinals from epoch days.
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def period_expr(tz: ZoneInfo, unit: Unit) -> pl.Expr:
    """The period index of every row, vectorized."""
    if unit is Unit.DAY:
        local = pl.col(TS).dt.convert_time_zone(str(tz)).dt.date()
        return (local.cast(pl.Int32) + _EPOCH_ORDINAL).cast(pl.Int64)
    return pl.col(TS).dt.epoch("s") // 3600


def weekday_of(index: int) -> int:
    """Monday = 0, for a day index."""
    return date.fromordinal(index).weekday()
