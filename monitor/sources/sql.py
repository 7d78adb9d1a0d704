"""The ``sql`` source: a query against any database SQLAlchemy can reach.

The query receives ``:start`` and ``:end`` (the poll range) so aggregation and
filtering run in the database; it returns one row per period and segment. The
URL usually carries a password: write it as ``${ENV_VAR}``; it is never logged
(errors show the URL with the password hidden). SQLite is built in, PostgreSQL
goes through psycopg (``postgresql+psycopg://``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo

import polars as pl
import sqlalchemy as sa
from pydantic import Field

from monitor.errors import SourceError
from monitor.sources.base import TS, SourceConfig
from monitor.sources.tabular import (
    ROW,
    TabularConfig,
    TabularSource,
    parse_records,
    report,
    require_fields,
)


class SqlConfig(TabularConfig):
    type: Literal["sql"] = "sql"
    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user:${PGPASSWORD}"
                                 "@host/db or sqlite:///exports.db (relative to the config).")
    query: str = Field(description="SQL with :start and :end placeholders.")
    parameters: Literal["datetime", "date", "epoch"] = Field(
        default="datetime", description="How :start and :end are bound: UTC date-times, local "
        "dates (in the source's time zone), or Unix seconds.")
    timeout: float = Field(default=30.0, gt=0, description="Connect timeout, seconds.")


class SqlSource(TabularSource):
    config_model: ClassVar[type[SourceConfig]] = SqlConfig

    def __init__(self, config: SqlConfig, *, timezone: str, base_dir: Path | None = None):
        super().__init__(config, timezone=timezone, base_dir=base_dir)
        url = sqlite_relative(config.url, self.base_dir)
        try:
            parsed = sa.engine.make_url(url)
            self.safe_url = parsed.render_as_string(hide_password=True)
            args = {"timeout": config.timeout} if parsed.get_backend_name() == "sqlite" else {
                "connect_timeout": int(config.timeout)}
            self.engine = sa.create_engine(url, connect_args=args, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise SourceError(f"source {self.name!r}: cannot use URL: {exc}") from None

    def poll(self, start: datetime, end: datetime) -> pl.DataFrame:
        try:
            conn = self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"source {self.name!r}: {self.safe_url}: {_reason(exc)}",
                              kind="connect") from None
        try:
            with conn:
                result = conn.execute(sa.text(self.config.query), self._bind(start, end))
                columns = list(result.keys())
                # The driver's tuples, not Row objects: a million rows a second faster.
                rows = result.cursor.fetchall() if result.cursor else []
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"source {self.name!r}: query failed: {_reason(exc)}",
                              kind="query") from None
        require_fields(columns, self.config, self.name, "query result")
        # Columns of mixed driver types (SQLite is dynamically typed) become text.
        raw = pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)
        raw = raw.select(self.config.fields()).with_row_index(ROW, offset=1)
        parsed = parse_records(raw, self.config, self.tz)
        report(parsed, self.name, "query result", self.config.strict)
        self.rejected = parsed.rejected
        return parsed.frame.filter((pl.col(TS) >= start) & (pl.col(TS) < end))

    def _bind(self, start: datetime, end: datetime) -> dict[str, object]:
        mode = self.config.parameters
        if mode == "epoch":
            return {"start": int(start.timestamp()), "end": int(end.timestamp())}
        if mode == "date":
            zone = ZoneInfo(self.tz)
            values: tuple = (start.astimezone(zone).date(), end.astimezone(zone).date())
        else:
            values = (start, end)
        if self.engine.dialect.name == "sqlite":  # SQLite compares dates as ISO text
            values = tuple(v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
                           for v in values)
        return {"start": values[0], "end": values[1]}


def sqlite_relative(url: str, base_dir: Path) -> str:
    """``sqlite:///rel/path.db`` is relative to the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(base_dir / url[len(prefix):])
    return url


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's message, first line only: never the statement or its parameters."""
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
