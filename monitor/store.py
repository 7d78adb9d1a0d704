"""The durable store: observations, alert state, the outbox and source state.

SQLAlchemy Core over SQLite (the embedded default, in WAL mode) or PostgreSQL.
Observations are upserted by ``(source, ts, labels)`` so a re-read of the last
days overwrites restated numbers. Times are stored as integer microseconds since
the epoch (UTC): exact, sortable and cheap to move into polars.
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

observations = sa.Table(
    "observations", metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),  # period start, µs since epoch, UTC
    sa.Column("labels", sa.Text, primary_key=True),  # canonical JSON of dimension labels
    sa.Column("measures", sa.Text, nullable=False),  # JSON object of measure values
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
sa.Index("observations_ts", observations.c.ts)

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
)
sa.Index("outbox_due", outbox.c.status, outbox.c.next_attempt_at)

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
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store: cannot open {_redact(url)}: {exc.__class__.__name__}: "
                             f"{exc.orig if hasattr(exc, 'orig') else exc}") from None

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

    def upsert_observations(self, source: str, frame: pl.DataFrame, now: datetime,
                            conn: Connection | None = None) -> int:
        """Insert or overwrite rows keyed by (source, ts, labels); returns the row count."""
        if frame.height == 0:
            return 0
        rows = encode_observations(frame, source, to_micros(now))
        stmt = self._insert(observations)
        stmt = stmt.on_conflict_do_update(
            index_elements=["source", "ts", "labels"],
            set_={"measures": stmt.excluded.measures, "updated_at": stmt.excluded.updated_at},
        )
        with self._conn(conn) as c:
            for chunk in _chunks(rows, 5000):
                c.execute(stmt, chunk)
        return len(rows)

    def load_observations(self, since: datetime) -> pl.DataFrame:
        q = sa.select(observations.c.source, observations.c.ts, observations.c.labels,
                      observations.c.measures).where(observations.c.ts >= to_micros(since))
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

    def enqueue(self, messages: Sequence[tuple[str, dict]], now: datetime,
                conn: Connection) -> None:
        if not messages:
            return
        at = to_micros(now)
        conn.execute(sa.insert(outbox), [
            {"created_at": at, "receiver": r, "payload": json.dumps(p, ensure_ascii=False),
             "status": "pending", "attempts": 0, "next_attempt_at": at}
            for r, p in messages
        ])

    def due_messages(self, now: datetime, limit: int = 100) -> list[sa.Row]:
        q = (sa.select(outbox).where(outbox.c.status == "pending",
                                     outbox.c.next_attempt_at <= to_micros(now))
             .order_by(outbox.c.id).limit(limit))
        with self.engine.connect() as c:
            return list(c.execute(q).all())

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


def encode_observations(frame: pl.DataFrame, source: str, updated_at: int) -> list[dict]:
    """Rows for the observations table; JSON is built column-wise by polars."""
    encoded = frame.select(
        pl.col(TS).dt.epoch("us").alias("ts"),
        label_key(label_columns(frame)).alias("labels"),
        label_key(measure_columns(frame)).alias("measures"),
    )
    return [{"source": source, "ts": ts, "labels": lab, "measures": mea, "updated_at": updated_at}
            for ts, lab, mea in encoded.iter_rows()]


def decode_observations(rows: Sequence[Any]) -> pl.DataFrame:
    """The inverse of encode_observations: a wide frame with label and measure columns."""
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


def _chunks(rows: list[dict], size: int) -> Iterator[list[dict]]:
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
