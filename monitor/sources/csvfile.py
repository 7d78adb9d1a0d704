"""The ``csv`` source: a file or a glob of files, as spreadsheets and ad cabinets export them.

Files are decoded as utf-8 (with or without a BOM) or cp1251, which Russian
exports still use; ``encoding: auto`` tries utf-8 first. The delimiter is
detected from the header line unless given. Fields are mapped and validated by
``tabular.parse_records``: bad rows are rejected with the file, line and field
named, or the whole poll refused when the source is ``strict``.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from monitor.errors import SourceError
from monitor.sources.base import TS, SourceConfig, empty_frame, matching_files
from monitor.sources.tabular import (
    ROW,
    TabularConfig,
    TabularSource,
    parse_records,
    report,
    require_fields,
)

DELIMITERS = ",;\t|"


class CsvConfig(TabularConfig):
    type: Literal["csv"] = "csv"
    path: str = Field(description="A file or a glob; relative paths are resolved "
                                  "against the config file's folder.")
    delimiter: str = Field(default="auto", description="One character, or 'auto' to detect "
                           "',', ';', tab or '|' from the header line.")
    encoding: Literal["auto", "utf-8", "cp1251"] = Field(
        default="auto", description="'auto' reads utf-8 and falls back to cp1251.")


class CsvSource(TabularSource):
    config_model: ClassVar[type[SourceConfig]] = CsvConfig

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        files = matching_files(self.config.path, self.base_dir, self.name)
        frames, rejected = [], 0
        for file in files:
            parsed = parse_records(self._read(file), self.config, self.tz)
            report(parsed, self.name, file, self.config.strict)
            frames.append(parsed.frame)
            rejected += parsed.rejected
        self.rejected = rejected
        out = pl.concat(frames, how="vertical") if frames else empty_frame(
            self.dimensions, self.measures)
        return out.filter((pl.col(TS) >= start) & (pl.col(TS) < end))

    def _read(self, file: str) -> pl.DataFrame:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise SourceError(f"source {self.name!r}: cannot read {file}: {exc.strerror}") \
                from None
        text = self._decode(data, file)
        delimiter = self.config.delimiter
        if delimiter == "auto":
            delimiter = detect_delimiter(text)
        try:
            raw = pl.read_csv(io.StringIO(text), separator=delimiter, infer_schema=False,
                              truncate_ragged_lines=False)
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"source {self.name!r}: cannot parse {file}: {exc}",
                              kind="parse") from None
        require_fields(raw.columns, self.config, self.name, file)
        # Line 1 is the header; this names lines correctly for files without
        # quoted line breaks, which exports of daily figures never have.
        return raw.select(self.config.fields()).with_row_index(ROW, offset=2)

    def _decode(self, data: bytes, file: str) -> str:
        encoding = self.config.encoding
        if encoding in ("auto", "utf-8"):
            try:
                return data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                if encoding == "utf-8":
                    raise SourceError(f"source {self.name!r}: {file} is not utf-8 (byte "
                                      f"{exc.start}); set encoding: cp1251", kind="parse") \
                        from None
        return data.decode("cp1251")


def detect_delimiter(text: str) -> str:
    """The delimiter of a csv text, from its first lines; ',' when nothing else fits."""
    sample = "\n".join(text[:65536].splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        return max(DELIMITERS, key=header.count) if header else ","
