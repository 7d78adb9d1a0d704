"""The durable store: observations, alert state, the outbox and source state.

SQLAlchemy Core over SQLite (the embedded default, in WAL mode) or PostgreSQL.
A poll replaces the stored rows of the periods it returns, so a re-read of the
last days overwrites restated numbers and never duplicates. Samples are keyed by
``(ts, series_id)``; a series is a source's label set. Times are stored as
integer microseconds since the epoch (UTC): exact, sortable, cheap for polars.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from monitor.errors import StoreError
from monitor.sources.base import TS, TS_DTYPE, label_columns, label_key, measure_columns

metadata = sa.MetaData()

# A series is one source's label set; samples refer to it by a small integer, so
# a million rows are written as (ts, id, measures), not with their labels each.
series = sa.Table(
    "series", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),  # canonical JSON of dimension labels
    sa.UniqueConstraint("source", "labels", name="series_source_labels"),
)

samples = sa.Table(
    "samples", metadata,
    # Time first: polls write and re-read recent periods, so inserts append to
    # the key's end and a range of periods is one contiguous scan.
    sa.Column("ts", sa.BigInteger, primary_key=True),  # period start, µs since epoch, UTC
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("measures", sa.Text, nullable=False),  # JSON object of measure values
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

alert_state = sa.Table(
    "alert_state", metadata,
    sa.Column("rule", sa.String(200), primary_key=True),
    sa.Column("series", sa.Text, primary_key=True),  # canonical JSON of the series labels
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("active_at", sa.BigInteger),
    sa.Column("fired_at", sa.BigInteger),
    sa.Column("resolved_at", sa.BigInteger),
    sa.Column("last_true_at", sa.BigInteger),
    sa.Column("notified_at", sa.BigInteger),
    sa.Column("value", sa.Float),
    sa.Column("kpi_values", sa.Text),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("receiver", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),  # pending|sent|dead
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
    sa.Column("sent_at", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    # Messages of one alert group to one receiver share a key; the sender merges
    # the pending ones into one notification (group_wait, group_interval, digests).
    sa.Column("group_key", sa.Text),
)
sa.Index("outbox_due", outbox.c.status, outbox.c.next_attempt_at)

# The notification log: when each group was last sent to each receiver.
notification_log = sa.Table(
    "notification_log", metadata,
    sa.Column("receiver", sa.String(200), primary_key=True),
    sa.Column("group_key", sa.Text, primary_key=True),
    sa.Column("sent_at", sa.BigInteger, nullable=False),
)

silences = sa.Table(
    "silences", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("matchers", sa.Text, nullable=False),  # JSON list of "name op value"
    sa.Column("starts_at", sa.BigInteger, nullable=False),
    sa.Column("ends_at", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

source_state = sa.Table(
    "source_state", metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("last_success_at", sa.BigInteger),
)

STATE_COLUMNS = [c.name for c in alert_state.columns]


def to_micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000) if t.tzinfo else int(
        t.replace(tzinfo=UTC).timestamp() * 1_000_000)


def from_micros(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Store:
    """One database; every write method takes or opens one transaction."""

    def __init__(self, url: str, base_dir: Path | None = None):
        url = _resolve_sqlite_path(url, base_dir)
        try:
            self.engine: Engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"store: cannot use URL {_redact(url)}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
            self._add_missing_columns()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store: cannot open {_redact(url)}: {exc.__class__.__name__}: "
                             f"{exc.orig if hasattr(exc, 'orig') else exc}") from None

    def _add_missing_columns(self) -> None:
        """Columns added since a store was created (create_all only makes new tables)."""
        existing = {c["name"] for c in sa.inspect(self.engine).get_columns("outbox")}
        if "group_key" not in existing:
            with self.engine.begin() as c:
                c.exec_driver_sql("ALTER TABLE outbox ADD COLUMN group_key TEXT")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # --- observations ---------------------------------------------------------

    def replace_observations(self, source: str, frame: pl.DataFrame, now: datetime,
                             conn: Connection | None = None) -> int:
        """Store a poll: for every period it holds, its rows replace the stored ones.

        A poll is the truth for the periods it returns: restated numbers
        overwrite, a segment that vanished from a re-read period is removed, and
        periods the poll does not mention are left alone. Returns the row count.
        """
        if frame.height == 0:
            return 0
        encoded = frame.select(
            pl.col(TS).dt.epoch("us").alias("ts"),
            label_key(label_columns(frame)).alias("labels"),
            label_key(measure_columns(frame)).alias("measures"),
        )
        periods = encoded["ts"].unique().to_list()
        with self._conn(conn) as c:
            ids = self._series_ids(c, source, encoded["labels"].unique())
            # In key order: B-tree inserts then append instead of splitting pages.
            rows = (encoded.join(ids, on="labels", how="left").sort("ts", "series_id")
                    .select("ts", "series_id", "measures",
                            pl.lit(to_micros(now), dtype=pl.Int64).alias("updated_at")).rows())
            of_source = sa.select(series.c.id).where(series.c.source == source)
            for chunk in _chunks(periods, 500):
                c.execute(sa.delete(samples).where(samples.c.ts.in_(chunk),
                                                   samples.c.series_id.in_(of_source)))
            self.bulk_insert(c, samples, rows)
        return len(rows)

    def _series_ids(self, conn: Connection, source: str, labels: pl.Series) -> pl.DataFrame:
        """``labels -> series_id`` for a source, creating the series not seen before."""
        def known() -> pl.DataFrame:
            rows = conn.execute(sa.select(series.c.labels, series.c.id)
                                .where(series.c.source == source)).all()
            return pl.DataFrame(rows, schema={"labels": pl.String, "series_id": pl.Int64},
                                orient="row")
        ids = known()
        new = labels.filter(~labels.is_in(ids["labels"].implode())).to_list()
        if new:
            conn.execute(sa.insert(series), [{"source": source, "labels": lab} for lab in new])
            ids = known()
        return ids

    def bulk_insert(self, conn: Connection, table: sa.Table, rows: list[tuple]) -> None:
        """executemany on the driver's cursor: a million rows in seconds, not minutes.

        SQLAlchemy's Core insert builds a dict per row; the driver takes tuples.
        Values are bound as parameters, never formatted into the statement.
        """
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        names = [c.name for c in table.columns]
        sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
               f"VALUES ({', '.join([mark] * len(names))})")
        for chunk in _chunks(rows, 50_000):
            conn.exec_driver_sql(sql, chunk)

    def load_observations(self, since: datetime, until: datetime | None = None) -> pl.DataFrame:
        """Stored rows with ``since <= ts < until`` as a wide frame (see decode_observations)."""
        q = (sa.select(series.c.source, samples.c.ts, series.c.labels, samples.c.measures)
             .join(series, series.c.id == samples.c.series_id)
             .where(samples.c.ts >= to_micros(since)))
        if until is not None:
            q = q.where(samples.c.ts < to_micros(until))
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return decode_observations(rows)

    # --- source state ---------------------------------------------------------

    def source_successes(self) -> dict[str, datetime]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(source_state)).all()
        return {r.source: from_micros(r.last_success_at) for r in rows if r.last_success_at}

    def record_success(self, source: str, at: datetime, conn: Connection) -> None:
        stmt = self._insert(source_state).values(source=source, last_success_at=to_micros(at))
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["source"], set_={"last_success_at": stmt.excluded.last_success_at}))

    # --- alert state ----------------------------------------------------------

    def load_alert_state(self) -> pl.DataFrame:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(alert_state)).all()
        from monitor.alerts import STATE_SCHEMA  # the schema belongs to the state machine
        return pl.DataFrame([tuple(r) for r in rows], schema=STATE_SCHEMA, orient="row")

    def replace_alert_state(self, rules: Sequence[str], state: pl.DataFrame,
                            conn: Connection) -> None:
        """Make the stored state of ``rules`` equal ``state`` (their rows only)."""
        conn.execute(sa.delete(alert_state).where(alert_state.c.rule.in_(list(rules))))
        if state.height:
            conn.execute(sa.insert(alert_state), state.select(STATE_COLUMNS).to_dicts())

    # --- outbox ---------------------------------------------------------------

    def enqueue(self, messages: Sequence[Any], now: datetime, conn: Connection) -> None:
        """Queue dispatch Messages (receiver, payload, group_key, not_before)."""
        if not messages:
            return
        at = to_micros(now)
        conn.execute(sa.insert(outbox), [
            {"created_at": at, "receiver": m.receiver, "status": "pending", "attempts": 0,
             "payload": json.dumps(m.payload, ensure_ascii=False),
             "next_attempt_at": to_micros(m.not_before), "group_key": m.group_key}
            for m in messages
        ])

    def pending_messages(self, limit: int = 1000) -> list[sa.Row]:
        """The oldest pending messages, due or not, in the order they were queued."""
        q = (sa.select(outbox).where(outbox.c.status == "pending").order_by(outbox.c.id)
             .limit(limit))
        with self.engine.connect() as c:
            return list(c.execute(q).all())

    def group_pending(self, receiver: str, group_key: str) -> list[sa.Row]:
        q = (sa.select(outbox).where(outbox.c.status == "pending",
                                     outbox.c.receiver == receiver,
                                     outbox.c.group_key == group_key).order_by(outbox.c.id))
        with self.engine.connect() as c:
            return list(c.execute(q).all())

    def mark_sent(self, ids: Sequence[int], receiver: str, group_key: str | None,
                  now: datetime, attempts: int) -> None:
        """Mark a delivered group's messages sent and log the group's send, atomically."""
        at = to_micros(now)
        with self.engine.begin() as c:
            c.execute(sa.update(outbox).where(outbox.c.id.in_(list(ids))).values(
                status="sent", sent_at=at, attempts=attempts, last_error=None))
            if group_key:
                stmt = self._insert(notification_log).values(receiver=receiver,
                                                             group_key=group_key, sent_at=at)
                c.execute(stmt.on_conflict_do_update(
                    index_elements=["receiver", "group_key"],
                    set_={"sent_at": stmt.excluded.sent_at}))

    def last_sent(self, since: datetime) -> dict[tuple[str, str], datetime]:
        q = sa.select(notification_log).where(notification_log.c.sent_at >= to_micros(since))
        with self.engine.connect() as c:
            return {(r.receiver, r.group_key): from_micros(r.sent_at) for r in c.execute(q)}

    def mark_message(self, msg_id: int, **values: Any) -> None:
        with self.engine.begin() as c:
            c.execute(sa.update(outbox).where(outbox.c.id == msg_id).values(**values))

    def outbox_counts(self) -> dict[str, int]:
        q = sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
        with self.engine.connect() as c:
            return {s: n for s, n in c.execute(q).all()}

    @contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as c:
                yield c


def decode_observations(rows: Sequence[Any]) -> pl.DataFrame:
    """Stored rows as a wide frame: source, ts, labels (JSON), one column per label and measure."""
    if not rows:
        return pl.DataFrame(schema={"source": pl.String, TS: TS_DTYPE, "labels": pl.String})
    raw = pl.DataFrame([tuple(r) for r in rows], schema=["source", "ts", "labels", "measures"],
                       orient="row")
    labels = raw["labels"].str.json_decode(infer_schema_length=None)
    measures = raw["measures"].str.json_decode(infer_schema_length=None)
    out = raw.select("source", pl.from_epoch("ts", "us").dt.replace_time_zone("UTC").alias(TS),
                     "labels")
    if isinstance(labels.dtype, pl.Struct) and labels.dtype.fields:
        out = out.with_columns(labels.struct.unnest().cast(pl.String))
    if isinstance(measures.dtype, pl.Struct) and measures.dtype.fields:
        out = out.with_columns(measures.struct.unnest().cast(pl.Float64))
    return out


def _chunks(rows: list, size: int) -> Iterator[list]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def _resolve_sqlite_path(url: str, base_dir: Path | None) -> str:
    """Relative SQLite paths are relative to the config file; the folder is created."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        return url
    path = Path(url[len(prefix):])
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid URL>"
