"""Funnel diagnosis: the stage whose conversion fell most, and what that usually means.

A funnel is an ordered list of additive measures (impressions, clicks, visits,
leads, conversions, revenue) with the labels to split it by. For every segment
the conversion of each step (clicks / impressions, leads / clicks…) over the
recent ``window`` of complete days is compared with the ``baseline`` days
before it; the step that fell most is the bottleneck. When it fell by more
than ``min_drop`` the built-in ``FunnelBottleneck`` alert carries the step, both
rates and the diagnosis marketers use (DOMAIN.md): many clicks and few leads
point at the landing page, many leads and few sales at the sales process, a
CTR that jumps while conversion collapses at irrelevant traffic, a CPA that
rises while each sale brings less at the wrong audience.

The computation is one grouped pass per funnel in polars, whatever the number
of segments.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.durations import Duration
from monitor.sources.base import TS

# (from, to) -> (English, Russian); a pair not listed falls back to its "to" stage.
DIAGNOSES: dict[tuple[str, str], tuple[str, str]] = {
    ("impressions", "clicks"): (
        "Fewer people click: the creative or the targeting wore out (ad fatigue, a changed "
        "audience).",
        "Кликают реже: креатив или таргетинг выдохлись (усталость от рекламы, сменилась "
        "аудитория)."),
    ("clicks", "visits"): (
        "Clicks do not become visits: a slow or broken landing page, or lost tracking.",
        "Клики не доходят до сайта: медленная или сломанная посадочная страница, либо "
        "потерялась разметка."),
    ("leads", "conversions"): (
        "Many leads, few sales: the sales process (speed of follow-up, lead quality).",
        "Лидов много, продаж мало: отдел продаж (скорость обработки, качество лидов)."),
    ("leads", "sales"): (
        "Many leads, few sales: the sales process (speed of follow-up, lead quality).",
        "Лидов много, продаж мало: отдел продаж (скорость обработки, качество лидов)."),
}
BY_TARGET: dict[str, tuple[str, str]] = {
    "visits": DIAGNOSES[("clicks", "visits")],
    "leads": ("Many clicks, few leads: the landing page (design, copy, form).",
              "Кликов много, лидов мало: посадочная страница (дизайн, текст, форма)."),
    "conversions": ("Visitors stopped buying: the landing page, the offer or the checkout.",
                    "Посетители перестали покупать: посадочная страница, оффер или "
                    "оформление заказа."),
    "revenue": ("Each sale brings less: the average order, discounts or the product mix.",
                "Каждая продажа приносит меньше: средний чек, скидки или ассортимент."),
}
IRRELEVANT = ("High CTR with very low conversion: irrelevant traffic, a bad sign rather than "
              "a good one. Check the creative and the placements.",
              "Высокий CTR при очень низкой конверсии — нерелевантный трафик, это плохой "
              "знак, а не хороший. Проверьте креатив и площадки.")
AUDIENCE = ("High CPA with low revenue per sale: the wrong target audience.",
            "Высокий CPA при низкой выручке с продажи: не та целевая аудитория.")
GENERIC = ("This step of the funnel converts worse than before.",
           "Этот шаг воронки конвертирует хуже, чем раньше.")
CTR_JUMP = 0.5  # the first step up by half while a later one collapses: irrelevant traffic


class FunnelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    stages: list[str] = Field(min_length=2, description="Ordered additive measures, e.g. "
                              "[impressions, clicks, leads, conversions, revenue].")
    by: list[str] = Field(default_factory=list, description="Labels to split by.")
    where: dict[str, str] = Field(default_factory=dict)
    window: Duration = Field(default="3d", description="Recent complete days.")
    baseline: Duration = Field(default="28d", description="The days before the window.")
    min_drop: float = Field(default=0.3, gt=0, lt=1, description="A step's conversion must "
                            "fall by this share to be a bottleneck.")
    min_volume: int = Field(default=100, ge=0, description="The window's first-stage volume "
                            "a segment needs (the small-sample guard).")
    owner: str = ""

    @model_validator(mode="after")
    def _days(self) -> FunnelSpec:
        for name in ("window", "baseline"):
            value = getattr(self, name)
            if value < timedelta(days=1) or value % timedelta(days=1):
                raise ValueError(f"{name} must be whole days, e.g. 3d")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("stages must be distinct")
        return self

    def steps(self) -> list[tuple[str, str]]:
        return list(zip(self.stages, self.stages[1:], strict=False))


def diagnosis(source: str, target: str) -> tuple[str, str]:
    return DIAGNOSES.get((source, target)) or BY_TARGET.get(target) or GENERIC


def evaluate_funnel(spec: FunnelSpec, frame: pl.DataFrame, now: datetime,
                    tz: ZoneInfo) -> pl.DataFrame:
    """One row per segment: each step's rate now and before, the bottleneck step, its
    change, whether it holds, and the diagnosis (English and Russian)."""
    needed = [*spec.stages, *spec.by, *spec.where]
    if frame.height == 0 or any(c not in frame.columns for c in needed):
        return pl.DataFrame()
    today = now.astimezone(tz).date()
    window_start = today - timedelta(days=spec.window.days)
    base_start = window_start - timedelta(days=spec.baseline.days)
    rows = frame.lazy()
    for label, value in spec.where.items():
        rows = rows.filter(pl.col(label) == value)
    day = pl.col(TS).dt.convert_time_zone(tz.key).dt.date()
    period = (pl.when((day >= window_start) & (day < today)).then(pl.lit("now"))
              .when((day >= base_start) & (day < window_start)).then(pl.lit("base")))
    extra = [m for m in ("cost",) if m in frame.columns and m not in spec.stages]
    sums = (rows.with_columns(period.alias("_period")).filter(pl.col("_period").is_not_null())
            .group_by([*spec.by, "_period"])
            .agg(pl.col(m).sum().cast(pl.Float64) for m in [*spec.stages, *extra]))
    now_ = sums.filter(pl.col("_period") == "now").drop("_period")
    base = sums.filter(pl.col("_period") == "base").drop("_period")
    joined = now_.join(base, on=spec.by, how="inner", suffix="_base") if spec.by else \
        now_.join(base, how="cross", suffix="_base")
    steps = spec.steps()
    rate = [(pl.col(b) / pl.col(a)).alias(f"rate_{i}") for i, (a, b) in enumerate(steps)]
    base_rate = [(pl.col(f"{b}_base") / pl.col(f"{a}_base")).alias(f"base_{i}")
                 for i, (a, b) in enumerate(steps)]
    out = joined.with_columns(*rate, *base_rate).with_columns(
        (pl.col(f"rate_{i}") / pl.col(f"base_{i}") - 1).fill_nan(None).alias(f"change_{i}")
        for i in range(len(steps)))
    changes = pl.concat_list([pl.col(f"change_{i}").fill_null(float("inf"))
                              for i in range(len(steps))])
    out = out.with_columns(changes.list.arg_min().alias("step"),
                           changes.list.min().alias("worst"))
    pick = {name: pl.concat_list([pl.col(f"{name}_{i}") for i in range(len(steps))])
            .list.get(pl.col("step")) for name in ("rate", "base")}
    texts = {f"{a}>{b}": diagnosis(a, b) for a, b in steps}
    step_name = pl.concat_list([pl.lit(f"{a}>{b}") for a, b in steps]).list.get(pl.col("step"))
    first_up = pl.col("change_0").fill_null(0) > CTR_JUMP
    audience = (pl.lit(bool(extra)) & pl.lit(steps[-1][1] == "revenue")
                & (pl.col("step") == len(steps) - 1)
                & _cpa_rose(spec, bool(extra)))
    out = out.with_columns(
        step_name.alias("step_name"), pick["rate"].alias("rate"), pick["base"].alias("base_rate"),
    ).with_columns(
        pl.when(pl.col("worst").is_infinite()).then(None).otherwise(pl.col("worst"))
        .alias("worst"),
        (pl.col(spec.stages[0]) >= spec.min_volume).alias("sufficient"),
        pl.when(first_up & (pl.col("step") > 0)).then(pl.lit(IRRELEVANT[0]))
        .when(audience).then(pl.lit(AUDIENCE[0]))
        .otherwise(pl.col("step_name").replace_strict({k: v[0] for k, v in texts.items()}))
        .alias("diagnosis"),
        pl.when(first_up & (pl.col("step") > 0)).then(pl.lit(IRRELEVANT[1]))
        .when(audience).then(pl.lit(AUDIENCE[1]))
        .otherwise(pl.col("step_name").replace_strict({k: v[1] for k, v in texts.items()}))
        .alias("diagnosis_ru"),
    ).with_columns((pl.col("worst") < -spec.min_drop).fill_null(False).alias("active"))
    return out.collect()


def _cpa_rose(spec: FunnelSpec, has_cost: bool) -> pl.Expr:
    """CPA (cost per conversion) up by more than min_drop against the baseline."""
    if not has_cost or "conversions" not in spec.stages:
        return pl.lit(False)
    now_cpa = pl.col("cost") / pl.col("conversions")
    base_cpa = pl.col("cost_base") / pl.col("conversions_base")
    return (now_cpa / base_cpa - 1 > spec.min_drop).fill_null(False)
