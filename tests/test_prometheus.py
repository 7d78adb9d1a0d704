"""The exporter against the real Prometheus: promtool lints the exposition, and a
Prometheus server scrapes a running kpimon and sees its KPIs and alerts."""

from __future__ import annotations

import subprocess
import time

import requests

from tests.conftest import write
from tests.test_daemon import HOOK, Daemon, free_port, wait_for


def test_promtool_finds_nothing_to_lint(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    d = Daemon(tmp_path, httpserver.url_for(HOOK))
    try:
        wait_for(lambda: "kpimon_kpi_value{" in d.get("/metrics").text)
        text = d.get("/metrics").text
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                              capture_output=True, timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert lint.stdout.strip() == "" and lint.stderr.strip() == ""
        gz = requests.get(d.base + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5)
        assert gz.headers["Content-Encoding"] == "gzip" and gz.text == text
    finally:
        d.stop()


def query(base: str, promql: str) -> list[dict]:
    resp = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert resp["status"] == "success", resp
    return resp["data"]["result"]


def test_prometheus_scrapes_kpis_and_alerts(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    d = Daemon(tmp_path, httpserver.url_for(HOOK))
    port = free_port()
    config = write(tmp_path / "prometheus.yml", f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        scrape_configs:
          - job_name: kpimon
            static_configs: [{{targets: ["127.0.0.1:{d.port}"]}}]
    """)
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        up = wait_for(lambda: _safe(lambda: query(base, 'up{job="kpimon"} == 1')), timeout=60)
        assert up
        cpa = wait_for(lambda: _safe(lambda: query(
            base, 'kpimon_kpi_value{kpi="cpa",window="7d",campaign="retargeting"}')),
            timeout=60)
        assert float(cpa[0]["value"][1]) > 650
        firing = wait_for(lambda: _safe(lambda: query(
            base, 'kpimon_alerts{alertstate="firing",alertname="CPAAboveTarget"}')), timeout=60)
        assert firing[0]["metric"]["campaign"] == "retargeting"
        # Both parts of the ratio are exported, so PromQL can re-aggregate CPA by channel.
        by_channel = query(base, 'sum by (channel) (kpimon_measure_value{measure="cost",'
                                 'window="7d"}) / sum by (channel) (kpimon_measure_value{'
                                 'measure="conversions",window="7d"})')
        assert {r["metric"]["channel"] for r in by_channel} == {"google_ads", "yandex_direct",
                                                                 "meta"}
        assert all(300 < float(r["value"][1]) < 700 for r in by_channel)
        # The line the board draws under the CPA.
        line = query(base, 'kpimon_rule_threshold{rule="CPAAboveTarget",'
                           'campaign="retargeting"}')
        assert float(line[0]["value"][1]) == 650
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        d.stop()


def _safe(fn):
    try:
        return fn()
    except requests.RequestException:
        time.sleep(0.2)
        return None
