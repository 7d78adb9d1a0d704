"""The prometheus source against a real Prometheus holding backfilled history."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from monitor.errors import SourceError
from monitor.sources.prometheus import PrometheusConfig, PrometheusSource
from tests.promserver import free_port

# Midnight UTC five days ago: the history spans whole UTC days up to yesterday.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FIRST = TODAY - timedelta(days=5)
PER_HOUR = {"google": 10, "meta": 4}


@contextmanager
def prometheus_with_history(tmp_path: Path) -> Iterator[str]:
    """Hourly counter samples for five days, backfilled with promtool, served by Prometheus."""
    lines = ["# HELP shop_orders Orders.", "# TYPE shop_orders counter"]
    for hour in range(5 * 24 + 1):
        at = FIRST + timedelta(hours=hour)
        for channel, rate in PER_HOUR.items():
            lines.append(f'shop_orders_total{{channel="{channel}"}} {rate * hour} '
                         f"{int(at.timestamp())}")
    lines.append("# EOF")
    (tmp_path / "history.om").write_text("\n".join(lines) + "\n")
    tsdb = tmp_path / "tsdb"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                    str(tmp_path / "history.om"), str(tsdb)], check=True, capture_output=True,
                   timeout=120)
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tsdb}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/-/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory) -> Iterator[str]:
    with prometheus_with_history(tmp_path_factory.mktemp("prom")) as base:
        yield base


def source(url: str, query: str, **kw) -> PrometheusSource:
    cfg = PrometheusConfig(name="shop", type="prometheus", url=url, query=query,
                           measure="conversions", **kw)
    return PrometheusSource(cfg, timezone="UTC")


def test_a_range_query_gives_one_row_per_day_and_series(prometheus_url):
    src = source(prometheus_url, "sum by (channel) (increase(shop_orders_total[1d]))")
    frame = src.poll(FIRST, TODAY).sort("channel", "ts")
    # The sample at t covers the day ending at t: five whole days, labelled by their start.
    days = [FIRST + timedelta(days=d) for d in range(5)]
    for channel, rate in PER_HOUR.items():
        rows = frame.filter(channel=channel)
        assert rows["ts"].to_list() == days
        assert rows["conversions"].to_list() == pytest.approx([24 * rate] * 5)
    assert set(frame.columns) == {"ts", "channel", "conversions"}


def test_selected_labels_only(prometheus_url):
    src = source(prometheus_url, "increase(shop_orders_total[1d])", dimensions=["channel"])
    frame = src.poll(TODAY - timedelta(days=2), TODAY)
    assert set(frame.columns) == {"ts", "channel", "conversions"}
    assert frame.height == 4


def test_bad_promql_is_a_query_error(prometheus_url):
    with pytest.raises(SourceError, match="HTTP 400") as err:
        source(prometheus_url, "sum by (").poll(FIRST, TODAY)
    assert err.value.kind == "query"


def test_unreachable_prometheus_is_a_connect_error():
    with pytest.raises(SourceError, match="cannot connect") as err:
        source(f"http://127.0.0.1:{free_port()}", "up").poll(FIRST, TODAY)
    assert err.value.kind == "connect"
