"""The ``jsonl`` source: files of one JSON object per line (a file or a glob).

Fields are dotted paths into each object (``metrics.clicks``), so nested API
dumps need no reshaping. A line that is not a JSON object is rejected like any
bad row, naming the file and line; numbers written as strings are parsed.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from monitor.errors import SourceError
from monitor.sources.base import TS, SourceConfig, empty_frame, matching_files
from monitor.sources.tabular import (
    ROW,
    Parsed,
    TabularConfig,
    TabularSource,
    parse_records,
    report,
    strings,
)


class JsonlConfig(TabularConfig):
    type: Literal["jsonl"] = "jsonl"
    path: str = Field(description="A file or a glob; relative paths are resolved "
                                  "against the config file's folder.")


def dig(record: object, path: str) -> object:
    """The value at a dotted path (``a.b.0.c``), or None when any step is missing."""
    for step in path.split(".") if path else ():
        if isinstance(record, dict):
            record = record.get(step)
        elif isinstance(record, list) and step.isdigit() and int(step) < len(record):
            record = record[int(step)]
        else:
            return None
    return record


def records_frame(records: list[object], rows: list[int], fields: list[str]) -> pl.DataFrame:
    """The raw frame of ``fields`` (dotted paths) from JSON records, plus ``_row``."""
    columns = {f: strings([_scalar(dig(r, f)) for r in records]) for f in fields}
    return pl.DataFrame({ROW: pl.Series(rows, dtype=pl.UInt32), **columns})


def _scalar(value: object) -> object:
    return json.dumps(value) if isinstance(value, dict | list) else value


class JsonlSource(TabularSource):
    config_model: ClassVar[type[SourceConfig]] = JsonlConfig

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        frames, rejected = [], 0
        for file in matching_files(self.config.path, self.base_dir, self.name):
            parsed = self._read(file)
            report(parsed, self.name, file, self.config.strict)
            frames.append(parsed.frame)
            rejected += parsed.rejected
        self.rejected = rejected
        out = pl.concat(frames) if frames else empty_frame(self.dimensions, self.measures)
        return out.filter((pl.col(TS) >= start) & (pl.col(TS) < end))

    def _read(self, file: str) -> Parsed:
        try:
            lines = Path(file).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"source {self.name!r}: cannot read {file}: {exc}") from None
        records, rows, broken = [], [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                broken.append(f"row {number}: not JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(record, dict):
                broken.append(f"row {number}: not a JSON object")
                continue
            records.append(record)
            rows.append(number)
        parsed = parse_records(records_frame(records, rows, self.config.fields()),
                               self.config, self.tz)
        return Parsed(parsed.frame, parsed.rejected + len(broken),
                      (broken + parsed.problems)[:5])
