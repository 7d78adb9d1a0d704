"""Ingest benchmarks of the sources and the store (see README "Performance").

    python -m bench.ingest

* 1,000,000 rows (10,000 campaigns x 100 days) from a CSV file into SQLite;
* the same rows from the sql source, a SQLite warehouse: a plain SELECT of its
  daily rows, and a GROUP BY over them (most of that time is SQLite's own);
* a 7-day re-read of 10,000 series (70,000 rows) over a store that already
  holds 100 days, merged into the window as the daemon does.

Each figure is the whole path a poll takes: read, parse and validate, store in
one transaction. Wall-clock seconds on this machine, printed, never asserted.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl

from bench.__main__ import peak_rss_mb
from bench.data import BENCH_NOW, ads
from monitor.sources.csvfile import CsvConfig, CsvSource
from monitor.sources.sql import SqlConfig, SqlSource
from monitor.store import Store
from monitor.window import Window

SERIES, DAYS = 10_000, 100
MEASURES = ["impressions", "clicks", "cost", "conversions", "revenue"]
TZ = "UTC"


def export(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame as an export writes it: a date column, labels, measures."""
    return frame.select(pl.col("ts").dt.date().alias("date"), "channel", "campaign", *MEASURES)


def timed(label: str, fn) -> float:
    t0 = time.perf_counter()
    rows = fn()
    seconds = time.perf_counter() - t0
    print(f"{label:<52} {rows:>9,} rows  {seconds:6.2f} s  ({rows / seconds:,.0f} rows/s)")
    return seconds


def main() -> None:
    data = ads(SERIES, DAYS, BENCH_NOW)
    start, end = BENCH_NOW - timedelta(days=DAYS + 1), BENCH_NOW
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export(data).write_csv(folder / "ads.csv")
        csv = CsvSource(CsvConfig(name="ads", type="csv", path="ads.csv",
                                  dimensions=["channel", "campaign"], measures=MEASURES),
                        timezone=TZ, base_dir=folder)
        store = Store(f"sqlite:///{folder}/csv.db")

        def csv_ingest() -> int:
            return store.replace_observations("ads", csv.poll(start, end), BENCH_NOW)

        timed("csv: 1M rows, file -> SQLite store", csv_ingest)

        table = export(data).with_columns(pl.col("date").cast(pl.String))
        with sqlite3.connect(folder / "warehouse.db") as db:
            db.execute(f"CREATE TABLE daily_stats ({', '.join(table.columns)})")
            db.executemany(f"INSERT INTO daily_stats VALUES ({', '.join('?' * table.width)})",
                           table.iter_rows())
        url = f"sqlite:///{folder}/warehouse.db"
        columns = "date, channel, campaign, " + ", ".join(MEASURES)
        queries = {
            "sql: 1M daily rows, SELECT -> SQLite store":
                f"SELECT {columns} FROM daily_stats WHERE date >= :start AND date <= :end",
            "sql: 1M rows, GROUP BY in SQLite -> SQLite store":
                "SELECT date, channel, campaign, " + ", ".join(
                    f"SUM({m}) AS {m}" for m in MEASURES) + " FROM daily_stats WHERE "
                "date >= :start AND date <= :end GROUP BY date, channel, campaign",
        }
        for label, query in queries.items():
            sql = SqlSource(SqlConfig(name="warehouse", type="sql", url=url, query=query,
                                      parameters="date", dimensions=["channel", "campaign"],
                                      measures=MEASURES), timezone=TZ)
            sql_store = Store(f"sqlite:///{folder}/sql-{len(label)}.db")

            def sql_ingest(sql=sql, sql_store=sql_store) -> int:
                return sql_store.replace_observations("warehouse", sql.poll(start, end),
                                                      BENCH_NOW)

            timed(label, sql_ingest)
            sql_store.close()

        window = Window(store.load_observations(start))
        polled = csv.poll(start, end)
        last_week = polled["ts"].unique().sort().tail(7)  # the last seven days
        restated = polled.filter(pl.col("ts").is_in(last_week.implode())).with_columns(
            pl.col("conversions") + 1)

        def reread() -> int:
            with store.transaction() as conn:
                rows = store.replace_observations("ads", restated, BENCH_NOW, conn)
            window.merge("ads", restated)
            return rows

        timed("re-read: 7 days x 10k series (store + window)", reread)
        store.close()
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
