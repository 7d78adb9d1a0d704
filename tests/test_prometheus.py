"""The exporter against the real Prometheus: promtool lints the exposition, and a
Prometheus server scrapes a running kpimon and sees its KPIs and alerts."""

from __future__ import annotations

import subprocess

import requests

from tests.promserver import prometheus, query, try_query
from tests.test_daemon import HOOK, Daemon, wait_for


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


def test_prometheus_scrapes_kpis_and_alerts(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    d = Daemon(tmp_path, httpserver.url_for(HOOK))
    try:
        with prometheus(tmp_path, d.port) as base:
            assert wait_for(lambda: try_query(base, 'up{job="kpimon"} == 1'), timeout=60)
            cpa = wait_for(lambda: try_query(
                base, 'kpimon_kpi_value{kpi="cpa",window="7d",campaign="retargeting"}'),
                timeout=60)
            assert float(cpa[0]["value"][1]) > 650
            firing = wait_for(lambda: try_query(
                base, 'kpimon_alerts{alertstate="firing",alertname="CPAAboveTarget"}'),
                timeout=60)
            assert firing[0]["metric"]["campaign"] == "retargeting"
            # Both parts of the ratio are exported: PromQL can re-aggregate CPA by channel.
            by_channel = query(base, 'sum by (channel) (kpimon_measure_value{measure="cost",'
                                     'window="7d"}) / sum by (channel) (kpimon_measure_value{'
                                     'measure="conversions",window="7d"})')
            assert {r["metric"]["channel"] for r in by_channel} == {
                "google_ads", "yandex_direct", "meta"}
            assert all(300 < float(r["value"][1]) < 700 for r in by_channel)
            # The line the board draws under the CPA.
            line = query(base, 'kpimon_rule_threshold{rule="CPAAboveTarget",'
                               'campaign="retargeting"}')
            assert float(line[0]["value"][1]) == 650
    finally:
        d.stop()
