"""Faults: a receiver down for an hour, a restart in the middle of a send burst."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date, timedelta

from werkzeug import Request, Response

from tests.conftest import NOW, write
from tests.test_daemon import free_port, wait_for
from tests.test_pipeline import Instance

RULES = """
    groups:
      - name: paid
        interval: 1s
        rules:
          - alert: CPAHigh
            expr: cpa > 500
            by: [campaign]
"""


def webhook_config(tmp_path, url: str, campaigns: int, listen: str = "",
                   day: str = "2026-03-12") -> object:
    rows = "".join(f"{day},c{i:02d},1000,1\n" for i in range(campaigns))
    write(tmp_path / "ads.csv", "date,campaign,cost,conversions\n" + rows)
    write(tmp_path / "rules.yaml", RULES)
    return write(tmp_path / "kpimon.yaml", textwrap.dedent(f"""
        global: {{timezone: UTC, evaluation_interval: 1s}}
        store: {{url: "sqlite:///k.db"}}
        {listen}
        sources:
          - {{name: ads, type: csv, path: ads.csv, dimensions: [campaign],
              measures: [cost, conversions], interval: 1h}}
        rule_files: [rules.yaml]
        receivers:
          - {{name: hook, type: webhook, url: "{url}"}}
        route: {{receiver: hook, group_by: [campaign]}}
    """))


def test_a_receiver_down_for_an_hour_gets_everything_in_order_once(tmp_path, httpserver):
    up = threading.Event()
    received: list[tuple[str, str]] = []

    def hook(request: Request) -> Response:
        if not up.is_set():
            return Response("down", status=503)
        body = json.loads(request.data)
        received.append((body["alerts"][0]["labels"]["campaign"], body["status"]))
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(hook)
    config = webhook_config(tmp_path, httpserver.url_for("/hook"), campaigns=1)
    app = Instance(config)
    csv = tmp_path / "ads.csv"
    app.cycle(NOW)  # c00 fires while the receiver is down
    for minute in range(1, 61):  # an hour of evaluations and failing deliveries
        at = NOW + timedelta(minutes=minute)
        if minute == 20:
            csv.write_text(csv.read_text() + "2026-03-12,c01,900,1\n")
        if minute == 40:
            csv.write_text("date,campaign,cost,conversions\n2026-03-12,c01,900,1\n")
        app.cycle(at)
    assert received == []
    assert app.store.outbox_counts() == {"pending": 3}, "queued, not dead-lettered"
    up.set()
    app.drain(NOW + timedelta(minutes=66))  # the backoff is at most 5 minutes
    assert received == [("c00", "firing"), ("c01", "firing"), ("c00", "resolved")]
    app.drain(NOW + timedelta(minutes=90))
    assert len(received) == 3 and app.store.outbox_counts() == {"sent": 3}


def test_a_restart_in_the_middle_of_a_send_burst_loses_and_doubles_nothing(tmp_path,
                                                                           httpserver):
    keys: list[str] = []
    campaigns: list[str] = []

    def slow_hook(request: Request) -> Response:
        time.sleep(0.15)
        keys.append(request.headers["Idempotency-Key"])
        campaigns.append(json.loads(request.data)["alerts"][0]["labels"]["campaign"])
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(slow_hook)
    port = free_port()
    config = webhook_config(tmp_path, httpserver.url_for("/hook"), campaigns=60,
                            listen=f'server: {{listen: "127.0.0.1:{port}"}}',
                            day=(date.today() - timedelta(days=1)).isoformat())

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "-c", str(config)],
                                stdout=(tmp_path / "daemon.log").open("a"),
                                stderr=subprocess.STDOUT, env=dict(os.environ))

    daemon = start()
    try:
        wait_for(lambda: len(keys) >= 10, timeout=60)
        daemon.send_signal(signal.SIGTERM)  # mid-burst: 60 messages take 9 s
        assert daemon.wait(timeout=30) == 0
        stopped_at = len(keys)
        assert stopped_at < 60, "the burst was interrupted"
        daemon = start()
        wait_for(lambda: len(keys) >= 60, timeout=60)
        time.sleep(1.5)  # anything doubled would arrive now
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert len(keys) == 60 and len(set(keys)) == 60
    assert sorted(campaigns) == [f"c{i:02d}" for i in range(60)]


def test_a_crash_mid_burst_repeats_at_most_the_one_in_flight_with_its_key(tmp_path,
                                                                          httpserver):
    """SIGKILL can land after a receiver accepted a message and before it was marked
    sent: that one message is delivered again, with the same Idempotency-Key."""
    keys: list[str] = []

    def slow_hook(request: Request) -> Response:
        time.sleep(0.15)
        keys.append(request.headers["Idempotency-Key"])
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(slow_hook)
    port = free_port()
    config = webhook_config(tmp_path, httpserver.url_for("/hook"), campaigns=30,
                            listen=f'server: {{listen: "127.0.0.1:{port}"}}',
                            day=(date.today() - timedelta(days=1)).isoformat())
    command = [sys.executable, "-m", "monitor.cli", "run", "-c", str(config)]
    daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(keys) >= 5, timeout=60)
        daemon.kill()
        daemon.wait(timeout=30)
        daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: len(set(keys)) >= 30, timeout=60)
        time.sleep(1.5)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert len(set(keys)) == 30
    assert len(keys) - len(set(keys)) <= 1
