"""Named time intervals, as Alertmanager writes them, plus explicit dates for holidays.

A route can be muted during intervals (``mute_time_intervals``: weekends, nights)
or active only during them (``active_time_intervals``: business hours). A
message that falls in a muted time is not dropped: the outbox holds it until
the route is next unmuted, so "no Telegram at night" means "in the morning".

    time_intervals:
      - name: business_hours
        time_intervals:
          - weekdays: ["monday:friday"]
            times: [{start_time: "09:00", end_time: "19:00"}]
            location: Europe/Moscow
      - name: holidays
        time_intervals:
          - dates: ["2026-01-01:2026-01-08", "2026-05-01"]
            location: Europe/Moscow
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
# field -> (names, lowest, highest, what): the arguments of _ranges.
RANGES: dict[str, tuple[list[str] | None, int, int, str]] = {
    "weekdays": (WEEKDAYS, 0, 6, "weekday"),
    "days_of_month": (None, 1, 31, "day of month"),
    "months": (MONTHS, 1, 12, "month"),
    "years": (None, 1, 9999, "year"),
}
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeRange(Strict):
    start_time: str
    end_time: str

    @field_validator("start_time", "end_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        m = _HHMM.match(v)
        if not m or (m.group(1) == "24" and m.group(2) != "00"):
            raise ValueError(f"{v!r} is not a time of day HH:MM (00:00 to 24:00)")
        return v

    def minutes(self) -> tuple[int, int]:
        def to_min(v: str) -> int:
            h, m = v.split(":")
            return int(h) * 60 + int(m)
        start, end = to_min(self.start_time), to_min(self.end_time)
        if end <= start:
            raise ValueError(f"end_time {self.end_time} is not after start_time "
                             f"{self.start_time}")
        return start, end


def _ranges(values: list[str], names: list[str] | None, low: int, high: int,
            what: str) -> list[tuple[int, int]]:
    """``["monday:friday", "sunday"]`` or ``["1:5", "-1"]`` as inclusive number ranges."""
    out = []
    for value in values:
        parts = value.lower().split(":")
        if len(parts) > 2:
            raise ValueError(f"{what} {value!r}: use one value or start:end")

        def number(p: str) -> int:
            if names and p in names:
                return names.index(p) + low
            try:
                n = int(p)
            except ValueError:
                raise ValueError(f"{what} {p!r} is not valid") from None
            if not (low <= abs(n) <= high) or (n < 0 and what != "day of month"):
                raise ValueError(f"{what} {p!r} is out of range")
            return n
        first, last = number(parts[0]), number(parts[-1])
        out.append((first, last))
    return out


class IntervalSpec(Strict):
    """One Alertmanager time interval; every listed field must match (unlisted: any)."""

    times: list[TimeRange] = Field(default_factory=list)
    weekdays: list[str] = Field(default_factory=list, description='"monday:friday", "sunday"')
    days_of_month: list[str] = Field(default_factory=list, description='"1:7", "-1" (last)')
    months: list[str] = Field(default_factory=list, description='"january:march", "12"')
    years: list[str] = Field(default_factory=list, description='"2026:2027"')
    dates: list[str] = Field(default_factory=list, description='Holidays: "2026-01-01:'
                             '2026-01-08", "2026-05-09"')
    location: str = Field(default="UTC", description="The time zone the fields are read in.")

    @field_validator("location")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("times")
    @classmethod
    def _times(cls, v: list[TimeRange]) -> list[TimeRange]:
        for r in v:
            r.minutes()
        return v

    @field_validator("weekdays", "days_of_month", "months", "years")
    @classmethod
    def _ranges(cls, v: list[str], info: ValidationInfo) -> list[str]:
        _ranges(v, *RANGES[info.field_name])
        return v

    @field_validator("dates")
    @classmethod
    def _dates(cls, v: list[str]) -> list[str]:
        for value in v:
            try:
                [date.fromisoformat(p) for p in value.split(":")]
            except ValueError:
                raise ValueError(f"date {value!r}: use YYYY-MM-DD or a range "
                                 "YYYY-MM-DD:YYYY-MM-DD") from None
        return v

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.location))
        day = local.date()
        if self.dates and not any(_in_dates(day, v) for v in self.dates):
            return False
        for field, value in (("weekdays", local.weekday()), ("months", local.month),
                             ("years", local.year)):
            values = getattr(self, field)
            if values and not _in(value, _ranges(values, *RANGES[field])):
                return False
        if self.days_of_month and not _day_of_month(local, self.days_of_month):
            return False
        if self.times:
            minute = local.hour * 60 + local.minute
            return any(s <= minute < e for s, e in (r.minutes() for r in self.times))
        return True


class TimeInterval(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    time_intervals: list[IntervalSpec] = Field(min_length=1)

    def contains(self, at: datetime) -> bool:
        return any(spec.contains(at) for spec in self.time_intervals)


def _in(value: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= value <= b for a, b in ranges)


def _in_dates(day: date, value: str) -> bool:
    parts = [date.fromisoformat(p) for p in value.split(":")]
    return parts[0] <= day <= parts[-1]


def _day_of_month(local: datetime, values: list[str]) -> bool:
    """Negative days count from the month's end: -1 is the last day."""
    following = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
    days_in_month = (following - timedelta(days=1)).day
    for a, b in _ranges(values, *RANGES["days_of_month"]):
        a = a if a > 0 else days_in_month + 1 + a
        b = b if b > 0 else days_in_month + 1 + b
        if a <= local.day <= b:
            return True
    return False


def muted(at: datetime, mute: list[TimeInterval], active: list[TimeInterval]) -> bool:
    """Whether a route with these mute and active intervals is silent at ``at``."""
    if any(i.contains(at) for i in mute):
        return True
    return bool(active) and not any(i.contains(at) for i in active)


def next_unmuted(at: datetime, mute: list[TimeInterval], active: list[TimeInterval],
                 horizon: timedelta = timedelta(days=400)) -> datetime:
    """The first instant at or after ``at`` when the route is not muted.

    Whether a route is muted can only change at a local midnight or at a start
    or end time of some interval, so only those instants are tried, day by day.
    """
    if not muted(at, mute, active):
        return at
    specs = [spec for i in (*mute, *active) for spec in i.time_intervals]
    minutes_by_zone: dict[str, set[int]] = {}
    for spec in specs:
        marks = minutes_by_zone.setdefault(spec.location, {0})
        for r in spec.times:
            marks.update(r.minutes())
    day = at.date() - timedelta(days=1)
    while datetime.combine(day, time(), at.tzinfo) < at + horizon:
        candidates = sorted(
            datetime.combine(day, time(), ZoneInfo(zone)) + timedelta(minutes=m)
            for zone, marks in minutes_by_zone.items() for m in marks if m < 1440)
        for t in candidates:
            if t > at and not muted(t, mute, active):
                return t.astimezone(at.tzinfo)
        day += timedelta(days=1)
    return at + horizon
