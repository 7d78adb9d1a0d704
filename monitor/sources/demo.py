"""The built-in ``demo`` source: a live marketing account, simulated.

Three ad channels with three campaigns each and two email lists, relative to the
current time: daily rows with weekday seasonality and noise from a fixed seed, so
every run sees the same history. Today's row grows through the day. Scheduled
incidents make the default rule pack fire on the first evaluation:

* ``yandex_direct / retargeting``: conversions collapse over the last 3 days (CPA spike);
* ``meta / video_views``: CTR jumps to ~8 % while conversion falls to ~0.3 %;
* email list ``promo``: yesterday's send had an unsubscribe spike;
* ``google_ads / generic_search``: the landing page's lead form broke 3 days ago:
  clicks as usual, leads down 80 % (a funnel incident: clicks -> leads).

A goal that falls behind is in ``config.example.yaml``.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo

import polars as pl
from pydantic import Field

from monitor.sources.base import TS, TS_DTYPE, SourceConfig

# channel -> campaign -> (impressions/day, ctr, cr, cpc, average order value)
CAMPAIGNS: dict[str, dict[str, tuple[int, float, float, float, float]]] = {
    "google_ads": {
        "brand_search": (40_000, 0.061, 0.052, 22.0, 3100.0),
        "generic_search": (120_000, 0.021, 0.036, 17.0, 2900.0),
        "shopping": (200_000, 0.012, 0.028, 14.0, 2400.0),
    },
    "yandex_direct": {
        "search": (90_000, 0.034, 0.036, 18.0, 2600.0),
        "rsya_network": (400_000, 0.0042, 0.021, 9.0, 2300.0),
        "retargeting": (60_000, 0.0095, 0.032, 16.0, 2700.0),
    },
    "meta": {
        "lookalike": (300_000, 0.009, 0.024, 12.0, 2500.0),
        "video_views": (500_000, 0.006, 0.018, 6.0, 2200.0),
        "stories": (250_000, 0.0075, 0.021, 10.0, 2350.0),
    },
}
# list -> (delivered per send, open rate, click rate, unsubscribe rate, conversion)
EMAIL_LISTS = {
    "newsletter": (48_000, 0.27, 0.034, 0.0016, 0.0021),
    "promo": (85_000, 0.19, 0.027, 0.0022, 0.0030),
}
WEEKDAY_FACTOR = (1.05, 1.08, 1.06, 1.02, 0.97, 0.86, 0.82)  # Mon..Sun


class DemoConfig(SourceConfig):
    type: Literal["demo"] = "demo"
    seed: int = 42
    incidents: bool = Field(default=True, description="Inject the scheduled incidents.")
    timezone: str | None = Field(default=None, description="Defaults to global.timezone.")


class DemoSource:
    """Deterministic, time-relative marketing data; see the module docstring."""

    config_model: ClassVar[type[SourceConfig]] = DemoConfig

    def __init__(self, config: DemoConfig, *, timezone: str, clock=None):
        self.config = config
        self.name = config.name
        self.tz = ZoneInfo(config.timezone or timezone)
        # The clock anchors "today" for the incidents; tests pass a fixed one.
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def dimensions(self) -> tuple[str, ...]:
        return ("channel", "campaign", "list")

    @property
    def measures(self) -> tuple[str, ...]:
        return ("impressions", "clicks", "cost", "conversions", "revenue", "leads",
                "delivered", "opens", "unsubscribes")

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        now = min(self._clock(), end)
        today = now.astimezone(self.tz).date()
        first = start.astimezone(self.tz).date()
        rows = []
        day = first
        while day <= today:
            midnight = datetime.combine(day, datetime.min.time(), self.tz)
            if start <= midnight < end:
                elapsed = self._day_fraction(now) if day == today else 1.0
                rows.extend(self._rows(day, today, midnight.astimezone(UTC), elapsed))
            day += timedelta(days=1)
        frame = pl.DataFrame(rows, schema={
            TS: TS_DTYPE, "channel": pl.String, "campaign": pl.String, "list": pl.String,
            **{m: pl.Float64 for m in self.measures},
        }, orient="row")
        return frame

    def _day_fraction(self, now: datetime) -> float:
        local = now.astimezone(self.tz)
        return max((local.hour * 3600 + local.minute * 60 + local.second) / 86400, 0.01)

    def _rows(self, day: date, today: date, ts: datetime, elapsed: float) -> list[tuple]:
        age = (today - day).days
        season = WEEKDAY_FACTOR[day.weekday()] * elapsed
        out = []
        for channel, campaigns in CAMPAIGNS.items():
            for campaign, (impr, ctr, cr, cpc, aov) in campaigns.items():
                rnd = random.Random(f"{self.config.seed}:{day}:{channel}:{campaign}")
                lead_rate = cr * 2.4  # form fills: the retargeting audience still fills them
                incident = self.config.incidents and 0 <= age <= 3
                if incident:
                    if campaign == "retargeting":
                        cr = cr * 0.15  # the CPA spike: the audience went stale
                    elif campaign == "video_views":
                        # A clickbait creative: cheap, irrelevant clicks that do not convert.
                        ctr, cr, cpc = 0.082, 0.0025, 1.2
                        lead_rate = cr * 2.4
                    elif campaign == "generic_search":
                        lead_rate *= 0.2  # the broken lead form
                impressions = round(impr * season * _noise(rnd, 0.06))
                clicks = _binomial(rnd, impressions, ctr)
                conversions = _binomial(rnd, clicks, cr)
                cost = round(clicks * cpc * _noise(rnd, 0.04), 2)
                revenue = round(conversions * aov * _noise(rnd, 0.08), 2)
                leads = _binomial(rnd, clicks, lead_rate)
                out.append((ts, channel, campaign, None, impressions, clicks, cost, conversions,
                            revenue, leads, None, None, None))
        for name, (delivered_n, open_r, click_r, unsub_r, conv_r) in EMAIL_LISTS.items():
            rnd = random.Random(f"{self.config.seed}:{day}:email:{name}")
            if day.weekday() not in (1, 3) and not (self.config.incidents and age == 1):
                continue  # sends go out on Tuesdays and Thursdays (and the incident day)
            if self.config.incidents and age == 1 and name == "promo":
                unsub_r = 0.0135  # a bought list segment was mailed
            delivered = round(delivered_n * _noise(rnd, 0.02) * min(1.0, elapsed * 4))
            out.append((ts, None, None, name, None, _binomial(rnd, delivered, click_r), None,
                        _binomial(rnd, delivered, conv_r), None, None, delivered,
                        _binomial(rnd, delivered, open_r), _binomial(rnd, delivered, unsub_r)))
        return out


def _noise(rnd: random.Random, sigma: float) -> float:
    return max(0.0, rnd.gauss(1.0, sigma))


def _binomial(rnd: random.Random, n: int, p: float) -> int:
    """A normal approximation of Binomial(n, p): exact enough and fast for a demo."""
    if n <= 0 or p <= 0:
        return 0
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return max(0, min(n, round(rnd.gauss(mean, sd))))
