"""The ``prometheus`` source: PromQL against a Prometheus HTTP API.

A range query (the default) is evaluated at every period of the poll range,
one step per period; an instant query reads the current period only. Each
result series becomes one row per step, its labels (those listed, or all but
``__name__``) the dimensions and its value the measure ``measure``. A sample at
time t is taken to cover the period that ends at t, so write the query as an
increase over the period: ``sum by (channel) (increase(orders_total[1d]))``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import polars as pl
import requests
from pydantic import Field

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.sources.base import TS, TS_DTYPE, SourceConfig, empty_frame

STEP = {"day": timedelta(days=1), "hour": timedelta(hours=1)}


class PrometheusConfig(SourceConfig):
    type: Literal["prometheus"] = "prometheus"
    url: str = Field(pattern=r"^https?://", description="Base URL, e.g. http://prometheus:9090")
    query: str = Field(description="PromQL; its value is the measure over one period.")
    measure: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    mode: Literal["range", "instant"] = "range"
    dimensions: list[str] | None = Field(default=None, description="Series labels kept as "
                                         "dimensions; all but __name__ when omitted.")
    headers: dict[str, str] = Field(default_factory=dict, description="E.g. Authorization: "
                                    "Bearer ${PROM_TOKEN}.")
    timeout: Duration = "30s"


class PrometheusSource:
    config_model: ClassVar[type[SourceConfig]] = PrometheusConfig

    def __init__(self, config: PrometheusConfig, *, timezone: str, base_dir: Path | None = None):
        self.config = config
        self.name = config.name
        self.rejected = 0
        parts = urlsplit(config.url)
        port = f":{parts.port}" if parts.port else ""
        self.safe_url = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        self.step = STEP[config.granularity]
        self.tz = ZoneInfo(timezone)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.config.dimensions or ())

    @property
    def measures(self) -> tuple[str, ...]:
        return (self.config.measure,)

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        cfg = self.config
        if cfg.mode == "instant":
            path, params = "/api/v1/query", {"query": cfg.query, "time": end.timestamp()}
        else:
            first = self._first_period_end(start)
            if first > end:
                return empty_frame(self.dimensions, self.measures)
            path, params = "/api/v1/query_range", {
                "query": cfg.query, "start": first.timestamp(), "end": end.timestamp(),
                "step": self.step.total_seconds()}
        data = self._get(path, params)
        return self._frame(data, end)

    def _first_period_end(self, start: datetime) -> datetime:
        """The end of the first period that starts at or after ``start`` (local days)."""
        local = start.astimezone(self.tz)
        if self.config.granularity == "hour":
            floor = local.replace(minute=0, second=0, microsecond=0)
        else:
            floor = local.replace(hour=0, minute=0, second=0, microsecond=0)
        first_start = floor if floor >= local else floor + self.step
        return first_start + self.step

    def _get(self, path: str, params: dict) -> dict:
        url = self.config.url.rstrip("/") + path
        try:
            answer = requests.post(url, data=params, headers=self.config.headers,
                                   timeout=self.config.timeout.total_seconds())
        except requests.Timeout:
            raise SourceError(f"source {self.name!r}: {self.safe_url}: timed out",
                              kind="timeout") from None
        except requests.RequestException as exc:
            raise SourceError(f"source {self.name!r}: {self.safe_url}: cannot connect "
                              f"({type(exc).__name__})", kind="connect") from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or body.get("status") != "success":
            kind = "query" if answer.status_code in (400, 422) else "http"
            raise SourceError(f"source {self.name!r}: {self.safe_url}: HTTP "
                              f"{answer.status_code}: {body.get('error', answer.reason)}",
                              kind=kind)
        return body["data"]

    def _frame(self, data: dict, end: datetime) -> pl.DataFrame:
        cfg = self.config
        kind, result = data.get("resultType"), data.get("result", [])
        if kind not in ("matrix", "vector"):
            raise SourceError(f"source {self.name!r}: the query returns a {kind}, not series",
                              kind="query")
        labels = self.dimensions or tuple(sorted(
            {k for series in result for k in series["metric"] if k != "__name__"}))
        rows = []
        for series in result:
            metric = series["metric"]
            samples = series["values"] if kind == "matrix" else [series["value"]]
            rows.extend((t, float(v), *(metric.get(k) for k in labels)) for t, v in samples)
        if not rows:
            return empty_frame(labels, self.measures)
        frame = pl.DataFrame(rows, schema=["t", cfg.measure, *labels], orient="row")
        # A range sample at t covers the period ending at t; an instant sample the
        # period (still open) that contains t. Periods are local days or hours.
        at = (frame["t"] * 1_000_000).cast(pl.Int64) - (1 if kind == "matrix" else 0)
        every = "1d" if self.config.granularity == "day" else "1h"
        ts = (pl.from_epoch(at, "us").dt.replace_time_zone("UTC")
              .dt.convert_time_zone(self.tz.key).dt.truncate(every)
              .dt.convert_time_zone("UTC").cast(TS_DTYPE))
        frame = frame.with_columns(ts.alias(TS), *(pl.col(k).cast(pl.String) for k in labels))
        frame = frame.filter(pl.col(cfg.measure).is_finite())
        return frame.select(TS, *labels, cfg.measure)
