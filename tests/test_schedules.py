"""Per-source schedules: interval or cron, and the offset that leaves late data alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import load_config
from monitor.cycle import LiveState, poll_source
from monitor.errors import ConfigError
from monitor.runtime import build
from monitor.sources.csvfile import CsvConfig
from monitor.store import Store
from tests.conftest import NOW, write

CONFIG = """
global: {{timezone: Europe/Moscow}}
store: {{url: "sqlite:///k.db"}}
sources:
  - name: ga
    type: csv
    path: ga.csv
    timezone: UTC
    granularity: hour
    dimensions: [campaign]
    measures: [sessions]
{extra}
"""


def test_a_bad_cron_expression_is_located(tmp_path):
    path = write(tmp_path / "k.yaml", CONFIG.format(extra="    schedule: '61 * * * *'"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "k.yaml:11:15: sources[0].schedule: not a cron expression" in message


def test_the_period_of_a_cron_schedule_feeds_staleness():
    every_two_hours = CsvConfig(name="x", path="x", measures=["a"], schedule="15 */2 * * *")
    assert every_two_hours.period("Europe/Moscow", NOW) == timedelta(hours=2)
    assert CsvConfig(name="x", path="x", measures=["a"], interval="10m").period(
        "UTC", NOW) == timedelta(minutes=10)


def test_offset_leaves_the_latest_hours_for_a_later_poll(tmp_path):
    rows = "\n".join(f"{(NOW - timedelta(hours=h)).strftime('%Y-%m-%d %H:00')},brand,{h}"
                     for h in range(1, 6))
    write(tmp_path / "ga.csv", "date,campaign,sessions\n" + rows + "\n")
    config = write(tmp_path / "k.yaml", CONFIG.format(extra="    offset: 3h\n"
                                                            "    backfill: 1d"))
    runtime = build(load_config(config))
    store = Store(runtime.config.store.url, runtime.loaded.base_dir)
    live = LiveState.restore(store, runtime, NOW)
    poll_source("ga", runtime, store, live, NOW)
    stored = store.load_observations(NOW - timedelta(days=1))
    assert sorted(stored["ts"].to_list()) == [NOW - timedelta(hours=5), NOW - timedelta(hours=4)]


def test_the_daemon_schedules_a_cron_source_with_a_cron_trigger(tmp_path):
    from apscheduler.triggers.cron import CronTrigger

    from monitor.daemon import Daemon

    write(tmp_path / "ga.csv", "date,campaign,sessions\n2026-03-13 10:00,brand,1\n")
    config = write(tmp_path / "k.yaml", CONFIG.format(extra="    schedule: '5 * * * *'")
                   + "server: {listen: '127.0.0.1:0'}\nrule_files: []\n")
    daemon = Daemon(config, clock=lambda: datetime.now(UTC), listen=("127.0.0.1", 0))
    try:
        daemon._schedule()
        job = daemon.scheduler.get_job("poll:ga")
        assert isinstance(job.trigger, CronTrigger)
        assert str(job.trigger.timezone) == "Europe/Moscow"
    finally:
        daemon.store.close()
