"""Source types, registered in one explicit dict: ``type`` in the config -> class."""

from __future__ import annotations

from monitor.sources.base import Source, SourceConfig
from monitor.sources.csvfile import CsvSource
from monitor.sources.demo import DemoSource

SOURCE_TYPES: dict[str, type] = {
    "demo": DemoSource,
    "csv": CsvSource,
}

__all__ = ["SOURCE_TYPES", "Source", "SourceConfig"]
