"""Source types, registered in one explicit dict: ``type`` in the config -> class."""

from __future__ import annotations

from monitor.sources.base import Source, SourceConfig
from monitor.sources.csvfile import CsvSource
from monitor.sources.demo import DemoSource
from monitor.sources.http_json import HttpJsonSource
from monitor.sources.jsonl import JsonlSource
from monitor.sources.prometheus import PrometheusSource
from monitor.sources.sql import SqlSource

SOURCE_TYPES: dict[str, type] = {
    "demo": DemoSource,
    "csv": CsvSource,
    "jsonl": JsonlSource,
    "sql": SqlSource,
    "http_json": HttpJsonSource,
    "prometheus": PrometheusSource,
}

__all__ = ["SOURCE_TYPES", "Source", "SourceConfig"]
