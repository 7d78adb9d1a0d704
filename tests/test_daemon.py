"""The real daemon as a user runs it: a subprocess, the demo source, a local Slack
stand-in, /metrics parsed by prometheus_client, reload and signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import write

HOOK = "/services/T/B/daemon"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


RULES = """
groups:
  - name: fast
    interval: 1s
    rules:
      - alert: CPAAboveTarget
        expr: cpa > 650
        over: 7d
        by: [channel, campaign]
        min_volume: {conversions: 5}
        for: 2s
        labels: {severity: warning}
        annotations: {summary: "CPA {{ value | money }} on {{ labels.campaign }}"}
      - alert: UnsubscribeSpike
        expr: unsubscribe_rate > 0.8%
        over: 1d
        by: [list]
        for: 2s
"""


class Daemon:
    def __init__(self, tmp_path: Path, hook_url: str, rules: str = RULES,
                 rule_files: str = "[rules.yaml]"):
        self.port = free_port()
        self.rules = write(tmp_path / "rules.yaml", rules)
        self.config = write(tmp_path / "kpimon.yaml", f"""
            global: {{timezone: Europe/Moscow, locale: ru_RU, evaluation_interval: 1s}}
            store: {{url: "sqlite:///var/k.db"}}
            server: {{listen: "127.0.0.1:{self.port}"}}
            sources: [{{name: demo, type: demo, interval: 2s}}]
            rule_files: {rule_files}
            receivers:
              - {{name: log, type: log}}
              - {{name: slack, type: slack, webhook_url: "${{HOOK_URL}}"}}
            route:
              receiver: log
              routes: [{{matchers: ['alertname="CPAAboveTarget"'], receiver: slack}}]
            goals:
              - {{name: conversions_month, kpi: conversions, target: 25000, period: month,
                  owner: marketing_lead}}
            funnels:
              - {{name: paid, stages: [impressions, clicks, leads], by: [channel, campaign]}}
        """)
        self.log = tmp_path / "daemon.log"
        env = {**os.environ, "HOOK_URL": hook_url}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "-c", str(self.config)],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return requests.get(self.base + "/-/healthy", timeout=1).ok
        except requests.ConnectionError:
            return False

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, timeout=5)

    def metrics(self) -> dict[str, list]:
        text = self.get("/metrics").text
        return {f.name: f.samples for f in text_string_to_metric_families(text)}

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
def hook(httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    return httpserver


def firing(metrics: dict[str, list]) -> set[tuple[str, str]]:
    return {(s.labels["alertname"], s.labels.get("campaign") or s.labels.get("list"))
            for s in metrics.get("kpimon_alerts", []) if s.labels["alertstate"] == "firing"}


def test_demo_incidents_fire_export_and_notify(tmp_path, hook):
    d = Daemon(tmp_path, hook.url_for(HOOK))
    try:
        got = wait_for(lambda: firing(d.metrics()) >= {("CPAAboveTarget", "retargeting"),
                                                       ("UnsubscribeSpike", "promo")})
        assert got
        metrics = d.metrics()
        kpis = {(s.labels["kpi"], s.labels.get("campaign")): s.value
                for s in metrics["kpimon_kpi_value"]}
        assert kpis[("cpa", "retargeting")] > 650
        assert kpis[("cpa", "brand_search")] < 650
        up = {s.labels["source"]: s.value for s in metrics["kpimon_source_up"]}
        assert up == {"demo": 1.0}
        assert metrics["kpimon_source_last_success_timestamp_seconds"][0].value > 0
        assert any(s.name == "kpimon_evaluation_duration_seconds_count"
                   for s in metrics["kpimon_evaluation_duration_seconds"])
        assert d.get("/-/ready").status_code == 200
        # The Slack stand-in got the CPA alert, formatted for ru_RU; the route sent
        # nothing else there.
        texts = wait_for(lambda: [json.loads(r.data)["text"] for r, _ in hook.log])
        assert len(texts) == 1 and "retargeting" in texts[0] and "₽" in texts[0]
        alerts = d.get("/api/v1/alerts").json()["data"]["alerts"]
        assert {a["labels"]["alertname"] for a in alerts} >= {"CPAAboveTarget"}
        rules = d.get("/api/v1/rules").json()["data"]["groups"][0]["rules"]
        assert {r["name"]: r["health"] for r in rules} == {"CPAAboveTarget": "ok",
                                                          "UnsubscribeSpike": "ok"}
        assert d.get("/api/v1/sources").json()["data"]["sources"][0]["up"] is True
        goal = wait_for(lambda: d.metrics().get("kpimon_goal_target"))
        assert goal[0].labels == {"goal": "conversions_month", "kpi": "conversions",
                                  "kpi_owner": "marketing_lead", "level": "marketing"}
        [pace] = d.get("/api/v1/goals").json()["data"]["goals"]
        assert pace["target"] == 25000 and 0 <= pace["elapsed"] <= 1
        assert "kpimon" in d.get("/").text
    finally:
        assert d.stop() == 0
    assert "stopped" in d.log.read_text()


def test_restart_sends_no_duplicate_and_sigint_stops_cleanly(tmp_path, hook):
    d = Daemon(tmp_path, hook.url_for(HOOK))
    wait_for(lambda: len(hook.log) >= 1)
    assert d.stop(signal.SIGINT) == 0
    d = Daemon(tmp_path, hook.url_for(HOOK))
    try:
        wait_for(lambda: ("CPAAboveTarget", "retargeting") in firing(d.metrics()))
        time.sleep(3)  # several evaluations after the restart
        assert len(hook.log) == 1
    finally:
        assert d.stop() == 0


def test_reload_keeps_the_last_good_rules(tmp_path, hook):
    d = Daemon(tmp_path, hook.url_for(HOOK))
    try:
        d.rules.write_text(RULES.replace("cpa > 650", "cpa >> 650"))
        resp = requests.post(d.base + "/-/reload", timeout=10)
        assert resp.status_code == 500 and "rules.yaml:7:20:" in resp.text
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in d.log.read_text())
        assert d.proc.poll() is None
        names = [r["name"] for r in d.get("/api/v1/rules").json()["data"]["groups"][0]["rules"]]
        assert names == ["CPAAboveTarget", "UnsubscribeSpike"]
        metrics = wait_for(lambda: (m := d.metrics())["kpimon_config_last_reload_successful"][0]
                           .value == 0 and m)
        assert metrics["kpimon_config_last_reload_success_timestamp_seconds"][0].value > 0
        d.rules.write_text(RULES.replace("UnsubscribeSpike", "UnsubscribeSurge"))
        assert requests.post(d.base + "/-/reload", timeout=10).status_code == 200
        names = [r["name"] for r in d.get("/api/v1/rules").json()["data"]["groups"][0]["rules"]]
        assert names == ["CPAAboveTarget", "UnsubscribeSurge"]
    finally:
        assert d.stop() == 0


def test_slack_down_is_retried_and_the_daemon_runs_on(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("rollup_error", status=500)
    d = Daemon(tmp_path, httpserver.url_for(HOOK))
    try:
        wait_for(lambda: len(httpserver.log) >= 2, timeout=40)
        assert d.proc.poll() is None
        assert "retrying in" in d.log.read_text()
        sent = {s.labels["outcome"]: s.value for s in d.metrics()["kpimon_notifications"]
                if s.name == "kpimon_notifications_total"}
        assert sent.get("retry", 0) >= 1
    finally:
        assert d.stop() == 0
    assert HOOK not in d.log.read_text(), "the webhook URL is a secret"


def test_invalid_config_exits_2_without_traceback(tmp_path):
    config = write(tmp_path / "bad.yaml", "sources: [{name: x, type: nosuch}]\n")
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{config}:1:" in result.stderr


def kpimon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_silences_through_the_cli_and_api_persist_across_a_restart(tmp_path, hook):
    d = Daemon(tmp_path, hook.url_for(HOOK))
    try:
        added = kpimon("silence", "add", 'campaign="retargeting"', 'severity=~"warn.*"',
                       "--duration", "2h", "--comment", "audience refresh", "--author", "anna",
                       "--url", d.base)
        assert added.returncode == 0, added.stderr
        silence_id = added.stdout.strip()
        listed = kpimon("silence", "list", "-c", str(d.config))
        assert silence_id in listed.stdout and "active" in listed.stdout
        assert 'campaign="retargeting"' in listed.stdout and "audience refresh" in listed.stdout
        bad = requests.post(d.base + "/api/v1/silences", json={"matchers": ["x"]}, timeout=5)
        assert bad.status_code == 400 and "invalid matcher" in bad.json()["error"]
        assert d.stop() == 0
        d = Daemon(tmp_path, hook.url_for(HOOK))  # same store: the silence is still there
        [silence] = d.get("/api/v1/silences").json()["data"]["silences"]
        assert silence["id"] == silence_id and silence["status"]["state"] == "active"
        assert silence["createdBy"] == "anna"
        expired = kpimon("silence", "expire", silence_id, "--url", d.base)
        assert expired.returncode == 0 and f"expired {silence_id}" in expired.stdout
        [silence] = d.get("/api/v1/silences").json()["data"]["silences"]
        assert silence["status"]["state"] == "expired"
        wait_for(lambda: {s.labels["state"]: s.value for s in d.metrics()["kpimon_silences"]}
                 == {"active": 0.0, "pending": 0.0, "expired": 1.0})
        missing = kpimon("silence", "expire", "nope", "--url", d.base)
        assert missing.returncode == 1 and "no silence 'nope'" in missing.stderr
        assert "Traceback" not in missing.stderr
    finally:
        d.stop()


def test_goals_funnels_and_ranking_on_the_demo(tmp_path, hook):
    d = Daemon(tmp_path, hook.url_for(HOOK))
    try:
        ranking = wait_for(lambda: d.get("/api/v1/ranking?by=channel&days=7")
                           .json()["data"]["segments"])
        assert {r["channel"] for r in ranking} == {"google_ads", "yandex_direct", "meta"}
        assert all(r["decision"] in ("scale", "cut", "reach", "keep") for r in ranking)
        assert d.get("/api/v1/ranking?days=0").status_code == 400
        goals = wait_for(lambda: d.get("/api/v1/goals").json()["data"]["goals"])
        assert goals[0]["goal"] == "conversions_month" and goals[0]["forecast_high"]

        def bottlenecks():
            alerts = d.get("/api/v1/alerts").json()["data"]["alerts"]
            return {a["labels"]["campaign"]: a for a in alerts
                    if a["labels"]["alertname"] == "FunnelBottleneck"}
        found = wait_for(lambda: len(bottlenecks()) >= 2 and bottlenecks())
        assert set(found) == {"generic_search", "video_views"}  # the demo's two incidents
        assert "посадочная страница" in found["generic_search"]["annotations"]["diagnosis_ru"]
        assert "irrelevant traffic" in found["video_views"]["annotations"]["diagnosis"]
    finally:
        d.stop()
