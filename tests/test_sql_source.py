"""The sql source against real SQLite and PostgreSQL databases."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from monitor.errors import SourceError
from monitor.sources.sql import SqlConfig, SqlSource

QUERY = """
    SELECT day AS date, campaign, SUM(clicks) AS clicks, SUM(cost) AS cost
    FROM ad_stats WHERE day >= :start AND day <= :end
    GROUP BY day, campaign ORDER BY day, campaign
"""
ROWS = [  # two rows per day and campaign: the query aggregates in the database
    (date(2026, 3, 9), "brand", 10, "100.50"), (date(2026, 3, 9), "brand", 5, "49.50"),
    (date(2026, 3, 10), "brand", 20, "210.00"), (date(2026, 3, 10), "generic", 7, "70.25"),
    (date(2026, 3, 12), "brand", 1, "1.00"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path) -> str:
    """A database with an ad_stats table (numeric cost: Decimal from PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        url = request.getfixturevalue("postgres").fresh_database()
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE ad_stats (day DATE, campaign TEXT, clicks INTEGER, "
                          "cost NUMERIC(12, 2))")
        c.execute(sa.text("INSERT INTO ad_stats VALUES (:d, :c, :k, :v)"),
                  [{"d": d if request.param == "postgresql" else d.isoformat(), "c": c,
                    "k": k, "v": v} for d, c, k, v in ROWS])
    engine.dispose()
    return url


def source(url: str, query: str = QUERY, **kw) -> SqlSource:
    kw.setdefault("parameters", "date")
    cfg = SqlConfig(name="warehouse", type="sql", url=url, query=query,
                    dimensions=["campaign"], measures=["clicks", "cost"], **kw)
    return SqlSource(cfg, timezone="UTC")


def test_query_aggregates_in_the_database_within_start_and_end(warehouse):
    frame = source(warehouse).poll(datetime(2026, 3, 9, tzinfo=UTC),
                                   datetime(2026, 3, 11, tzinfo=UTC))
    assert frame.select("ts", "campaign", "clicks", "cost").rows() == [
        (datetime(2026, 3, 9, tzinfo=UTC), "brand", 15.0, 150.0),
        (datetime(2026, 3, 10, tzinfo=UTC), "brand", 20.0, 210.0),
        (datetime(2026, 3, 10, tzinfo=UTC), "generic", 7.0, 70.25),
    ]


def test_epoch_parameters(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE daily (ts INTEGER, campaign TEXT, clicks REAL, "
                          "cost REAL)")
        c.exec_driver_sql("INSERT INTO daily VALUES (1773014400, 'a', 1, 2), "
                          "(1773100800, 'a', 3, 4)")
    src = source(url, "SELECT ts, campaign, clicks, cost FROM daily WHERE ts >= :start "
                      "AND ts < :end", parameters="epoch", timestamp="ts",
                 timestamp_format="epoch")
    frame = src.poll(datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
    assert frame.select("ts", "clicks").rows() == [(datetime(2026, 3, 10, tzinfo=UTC), 3.0)]


def test_a_missing_column_names_the_fields(warehouse):
    src = source(warehouse, "SELECT day AS date, campaign, clicks FROM ad_stats")
    with pytest.raises(SourceError, match="query result: missing field\\(s\\) cost") as err:
        src.poll(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert err.value.kind == "parse"


def test_a_broken_query_is_a_query_error(warehouse):
    with pytest.raises(SourceError, match="query failed") as err:
        source(warehouse, "SELECT nothing FROM nowhere").poll(
            datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert err.value.kind == "query"


def test_an_unreachable_server_never_shows_the_password(postgres, caplog):
    url = f"postgresql+psycopg://kpimon:s3cret-pw@127.0.0.1:{postgres.port + 1}/x"
    with pytest.raises(SourceError) as err:
        source(url, timeout=2).poll(datetime(2026, 1, 1, tzinfo=UTC),
                                    datetime(2027, 1, 1, tzinfo=UTC))
    assert err.value.kind == "connect"
    assert "s3cret-pw" not in str(err.value) and "***" in str(err.value)
