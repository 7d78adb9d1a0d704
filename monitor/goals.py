"""Goals and pacing: a KPI's actual to date against its target for a period.

A goal names a KPI (or an additive measure), a target, and a period: the
current week, month, quarter or year in ``global.timezone``, or explicit
``start``/``deadline`` dates. For an additive measure (leads, conversions,
revenue) the pace is linear: expected to date = target x elapsed share of the
period, and the forecast for the period's end = actual / elapsed share. For a
ratio KPI (CPA, CR) the target is a level, so expected = target and the
forecast is the value to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.kpis import Catalog
from monitor.periods import Unit, period_start
from monitor.sources.base import TS

MAX_KPIS_PER_GOAL = 5  # DOMAIN: 3 to 5 KPIs per goal, one main and one or two supporting


class GoalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    kpi: str = Field(description="The main KPI, or an additive measure such as leads.")
    supporting: list[str] = Field(default_factory=list, description="Supporting KPIs.")
    target: float
    baseline: float | None = Field(default=None, description="The value when the goal was set.")
    period: Literal["week", "month", "quarter", "year"] | None = "month"
    start: date | None = None
    deadline: date | None = None
    where: dict[str, str] = Field(default_factory=dict, description="Only rows with these "
                                  "label values, e.g. {channel: google_ads}.")
    owner: str = ""
    level: Literal["business", "marketing", "tactical"] = "marketing"
    cadence: Literal["daily", "weekly", "monthly"] = "weekly"

    @model_validator(mode="after")
    def _dates(self) -> GoalSpec:
        if (self.start is None) != (self.deadline is None):
            raise ValueError("give both start and deadline, or a period")
        if self.start and self.deadline and self.deadline < self.start:
            raise ValueError("deadline is before start")
        return self

    def bounds(self, today: date) -> tuple[date, date]:
        """First and last day (inclusive) of the goal's period around ``today``."""
        if self.start and self.deadline:
            return self.start, self.deadline
        if self.period == "week":
            first = today - timedelta(days=today.weekday())
            return first, first + timedelta(days=6)
        if self.period == "month":
            first = today.replace(day=1)
            nxt = (first + timedelta(days=32)).replace(day=1)
            return first, nxt - timedelta(days=1)
        if self.period == "quarter":
            first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
            nxt = (first + timedelta(days=95)).replace(day=1)
            return first, nxt - timedelta(days=1)
        return date(today.year, 1, 1), date(today.year, 12, 31)


@dataclass(frozen=True)
class Pace:
    elapsed: float  # share of the period's days that are complete, 0..1
    value: float | None  # actual to date
    expected: float | None
    forecast: float | None


GOAL_SCHEMA = {"goal": pl.String, "kpi": pl.String, "owner": pl.String, "level": pl.String,
               "target": pl.Float64, "value": pl.Float64, "expected": pl.Float64,
               "forecast": pl.Float64, "elapsed": pl.Float64}


def pace(target: float, value: float | None, elapsed: float, additive: bool) -> Pace:
    """Expected to date and forecast for the period's end (see the module docstring)."""
    if not additive:
        return Pace(elapsed, value, target, value)
    if value is None or elapsed <= 0:
        return Pace(elapsed, value, target * max(elapsed, 0), None)
    return Pace(elapsed, value, target * elapsed, value / elapsed)


def evaluate_goals(goals: list[GoalSpec], frame: pl.DataFrame, now: datetime, tz: ZoneInfo,
                   catalog: Catalog) -> pl.DataFrame:
    """One row per goal: target, value to date, expected to date, forecast."""
    rows = []
    today = now.astimezone(tz).date()
    for goal in goals:
        first, last = goal.bounds(today)
        days = (last - first).days + 1
        done = min(max((today - first).days, 0), days)  # complete days so far
        start = period_start(first.toordinal(), tz, Unit.DAY)
        end = period_start(min(today, last + timedelta(days=1)).toordinal(), tz, Unit.DAY)
        value = _value(goal, frame, start, end, catalog)
        p = pace(goal.target, value, done / days, goal.kpi not in catalog)
        rows.append((goal.name, goal.kpi, goal.owner, goal.level, goal.target, p.value,
                     p.expected, p.forecast, p.elapsed))
    return pl.DataFrame(rows, schema=GOAL_SCHEMA, orient="row")


def _value(goal: GoalSpec, frame: pl.DataFrame, start: datetime, end: datetime,
           catalog: Catalog) -> float | None:
    if frame.height == 0 or any(label not in frame.columns for label in goal.where):
        return None
    rows = frame.lazy().filter((pl.col(TS) >= start) & (pl.col(TS) < end))
    for label, value in goal.where.items():
        rows = rows.filter(pl.col(label) == value)
    measures = catalog.expand(catalog[goal.kpi].tree) if goal.kpi in catalog else {goal.kpi}
    present = [m for m in sorted(measures) if m in frame.columns]
    sums = rows.select(pl.col(m).sum() for m in present).with_columns(
        pl.lit(None, pl.Float64).alias(m) for m in sorted(measures) if m not in present)
    result = sums.select(catalog.column(goal.kpi).cast(pl.Float64).alias("v")).collect()
    return result["v"][0] if result.height else None
