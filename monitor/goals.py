"""Goals and pacing: a KPI's actual to date against its target for a period.

A goal names a KPI (or an additive measure), a target, and a period: the
current week, month, quarter or year in ``global.timezone``, or explicit
``start``/``deadline`` dates. Only complete days count.

For an additive measure (leads, conversions, revenue) each day of the period
has a weight: 1 for ``pacing: linear``, or, for ``pacing: weekday``, the
weekday's share learned from the eight weeks before the period (Mondays sell
more than Sundays). Then::

    expected to date = target x (weight of the days done / weight of all days)
    run rate         = actual / weight of the days done
    forecast         = actual + run rate x weight of the days left

and a 90 % interval around the forecast from how much past days varied around
their weekday's level. For a ratio KPI (CPA, CR) the target is a level: expected
is the target and the forecast the value to date. A goal is *at risk* when the
forecast falls short of ``at_risk`` x target (beyond target / ``at_risk`` for a
KPI where lower is better), once ``min_days`` days are done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.kpis import Better, Catalog
from monitor.periods import Unit, period_start
from monitor.sources.base import TS

MAX_KPIS_PER_GOAL = 5  # DOMAIN: 3 to 5 KPIs per goal, one main and one or two supporting
PROFILE_WEEKS = 8
MIN_PROFILE_DAYS = 14
Z90 = 1.645


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
    pacing: Literal["linear", "weekday"] = Field(
        default="linear", description="How an additive goal is expected to accrue: evenly, "
        "or by the weekday profile of the eight weeks before the period.")
    at_risk: float | None = Field(default=0.9, gt=0, le=1, description="Alert when the "
                                  "forecast reaches less than this share of the target; null: "
                                  "never.")
    min_days: int = Field(default=3, ge=1, description="Complete days before a goal can be "
                          "at risk: the first days say little.")

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
    elapsed: float  # expected share of the period done (weighted), 0..1
    value: float | None  # actual to date
    expected: float | None
    forecast: float | None
    low: float | None = None  # the forecast's 90 % interval
    high: float | None = None


GOAL_SCHEMA = {"goal": pl.String, "kpi": pl.String, "owner": pl.String, "level": pl.String,
               "target": pl.Float64, "value": pl.Float64, "expected": pl.Float64,
               "forecast": pl.Float64, "forecast_low": pl.Float64, "forecast_high": pl.Float64,
               "elapsed": pl.Float64, "days_done": pl.Int64, "pacing": pl.String,
               "at_risk": pl.Boolean}


def pace(target: float, value: float | None, elapsed: float, additive: bool) -> Pace:
    """Linear pace: expected to date and forecast (see the module docstring)."""
    if not additive:
        return Pace(elapsed, value, target, value)
    if value is None or elapsed <= 0:
        return Pace(elapsed, value, target * max(elapsed, 0), None)
    return Pace(elapsed, value, target * elapsed, value / elapsed)


def weighted_pace(target: float, value: float | None, done: list[float], left: list[float],
                  cv: float | None) -> Pace:
    """Pace with a weight per day (``done`` and ``left`` days) and a 90 % interval.

    ``cv`` is the relative spread of a day around its weekday's level; the
    interval adds the spread of the days left and the uncertainty of a run rate
    measured on the days done.
    """
    total = sum(done) + sum(left)
    share = sum(done) / total if total else 0.0
    if value is None or not done or sum(done) <= 0:
        return Pace(share, value, target * share, None)
    rate = value / sum(done)
    forecast = value + rate * sum(left)
    if cv is None or not left:
        return Pace(share, value, target * share, forecast, forecast if not left else None,
                    forecast if not left else None)
    days_left = rate * cv * math.sqrt(sum(w * w for w in left))
    run_rate = rate * sum(left) * cv / math.sqrt(len(done))
    spread = Z90 * math.hypot(days_left, run_rate)
    return Pace(share, value, target * share, forecast, max(value, forecast - spread),
                forecast + spread)


def weekday_profile(daily: pl.DataFrame) -> tuple[list[float], float | None] | None:
    """Weights per weekday (Monday first, mean 1) and the relative day-to-day spread,
    from a frame of ``day`` (Date) and ``value`` (daily totals); None when too short."""
    if daily.height < MIN_PROFILE_DAYS or daily["value"].sum() <= 0:
        return None
    days = daily.with_columns(pl.col("day").dt.weekday().alias("wd"))  # 1 = Monday
    mean = days["value"].mean()
    by_wd = days.group_by("wd").agg(pl.col("value").mean().alias("m"))
    levels = {wd: m / mean for wd, m in by_wd.iter_rows()}
    weights = [levels.get(wd, 1.0) for wd in range(1, 8)]
    residual = days.with_columns(
        (pl.col("value") / (pl.col("wd").replace_strict(levels, return_dtype=pl.Float64) * mean))
        .alias("r"))["r"]
    cv = residual.std() if residual.len() > 2 else None
    return weights, (float(cv) if cv is not None and math.isfinite(cv) else None)


def evaluate_goals(goals: list[GoalSpec], frame: pl.DataFrame, now: datetime, tz: ZoneInfo,
                   catalog: Catalog) -> pl.DataFrame:
    """One row per goal: target, value to date, expected to date, forecast and interval."""
    rows = []
    today = now.astimezone(tz).date()
    for goal in goals:
        first, last = goal.bounds(today)
        days = (last - first).days + 1
        done_days = min(max((today - first).days, 0), days)  # complete days so far
        start = period_start(first.toordinal(), tz, Unit.DAY)
        end = period_start(min(today, last + timedelta(days=1)).toordinal(), tz, Unit.DAY)
        value = _value(goal, frame, start, end, catalog)
        additive = goal.kpi not in catalog
        pacing = goal.pacing if additive else "level"
        if additive:
            profile = None
            if goal.pacing == "weekday":
                profile = weekday_profile(_daily(goal, frame, first - timedelta(
                    weeks=PROFILE_WEEKS), first, tz))
                pacing = "weekday" if profile else "linear (not enough history)"
            weights, cv = profile if profile else ([1.0] * 7, None)
            if cv is None and done_days >= 3:  # no history: the period's own days
                own = _daily(goal, frame, first, first + timedelta(days=done_days), tz)
                cv = weekday_profile_cv(own, weights)
            period_days = [first + timedelta(days=i) for i in range(days)]
            p = weighted_pace(goal.target, value,
                              [weights[d.weekday()] for d in period_days[:done_days]],
                              [weights[d.weekday()] for d in period_days[done_days:]], cv)
        else:
            p = pace(goal.target, value, done_days / days, additive=False)
        risky = at_risk(goal, p.forecast, catalog) and done_days >= goal.min_days
        rows.append((goal.name, goal.kpi, goal.owner, goal.level, goal.target, p.value,
                     p.expected, p.forecast, p.low, p.high, p.elapsed, done_days, pacing,
                     risky))
    return pl.DataFrame(rows, schema=GOAL_SCHEMA, orient="row")


def at_risk(goal: GoalSpec, forecast: float | None, catalog: Catalog) -> bool:
    if goal.at_risk is None or forecast is None:
        return False
    lower_better = goal.kpi in catalog and catalog[goal.kpi].better is Better.LOWER
    if lower_better:
        return forecast > goal.target / goal.at_risk
    return forecast < goal.target * goal.at_risk


def weekday_profile_cv(daily: pl.DataFrame, weights: list[float]) -> float | None:
    """The relative spread of days around a weekday profile, from few days."""
    if daily.height < 3 or daily["value"].mean() in (None, 0):
        return None
    mean = daily["value"].mean()
    levels = {wd + 1: w for wd, w in enumerate(weights)}
    r = daily.select(pl.col("value") / (pl.col("day").dt.weekday().replace_strict(
        levels, return_dtype=pl.Float64) * mean))["value"]
    cv = r.std()
    return float(cv) if cv is not None and math.isfinite(cv) else None


def _rows(goal: GoalSpec, frame: pl.DataFrame, start: datetime, end: datetime) -> pl.LazyFrame:
    rows = frame.lazy().filter((pl.col(TS) >= start) & (pl.col(TS) < end))
    for label, value in goal.where.items():
        rows = rows.filter(pl.col(label) == value)
    return rows


def _daily(goal: GoalSpec, frame: pl.DataFrame, first: date, end: date,
           tz: ZoneInfo) -> pl.DataFrame:
    """Daily totals of an additive goal's measure over local days [first, end)."""
    empty = pl.DataFrame(schema={"day": pl.Date, "value": pl.Float64})
    if (frame.height == 0 or goal.kpi not in frame.columns
            or any(label not in frame.columns for label in goal.where)):
        return empty
    start = period_start(first.toordinal(), tz, Unit.DAY)
    stop = period_start(end.toordinal(), tz, Unit.DAY)
    return (_rows(goal, frame, start, stop)
            .group_by(pl.col(TS).dt.convert_time_zone(tz.key).dt.date().alias("day"))
            .agg(pl.col(goal.kpi).sum().cast(pl.Float64).alias("value"))
            .sort("day").collect())


def _value(goal: GoalSpec, frame: pl.DataFrame, start: datetime, end: datetime,
           catalog: Catalog) -> float | None:
    if frame.height == 0 or any(label not in frame.columns for label in goal.where):
        return None
    rows = _rows(goal, frame, start, end)
    measures = catalog.expand(catalog[goal.kpi].tree) if goal.kpi in catalog else {goal.kpi}
    present = [m for m in sorted(measures) if m in frame.columns]
    sums = rows.select(pl.col(m).sum() for m in present).with_columns(
        pl.lit(None, pl.Float64).alias(m) for m in sorted(measures) if m not in present)
    result = sums.select(catalog.column(goal.kpi).cast(pl.Float64).alias("v")).collect()
    return result["v"][0] if result.height else None
