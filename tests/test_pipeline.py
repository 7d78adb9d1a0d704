"""The whole flow in process, step by step with explicit times: poll -> store -> window
-> rules -> alert state -> outbox -> Slack (a real local HTTP server) and restarts."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.cycle import (
    LiveState,
    evaluate_funnels,
    evaluate_goal_pace,
    evaluate_group,
    evaluate_sources,
    poll_source,
)
from monitor.outbox import Sender
from monitor.runtime import build
from monitor.store import Store
from tests.conftest import NOW, write

HOOK = "/services/T/B/secret"
CSV_HEADER = "date,campaign,cost,conversions\n"


class Instance:
    """One 'process': a runtime, a store and live state built from the config file."""

    def __init__(self, config: Path):
        self.rt = build(load_config(config))
        self.store = Store(self.rt.config.store.url, self.rt.loaded.base_dir)
        self.live = LiveState.restore(self.store, self.rt, NOW)
        self.sender = Sender(self.store, self.rt.notifiers)

    def cycle(self, at, send=True):
        for name in self.rt.sources:
            poll_source(name, self.rt, self.store, self.live, at)
        for group in self.rt.rules.groups:
            evaluate_group(group, self.rt, self.store, self.live, at)
        evaluate_sources(self.rt, self.store, self.live, at)
        if self.rt.config.goals:
            evaluate_goal_pace(self.rt, self.store, self.live, at)
        if self.rt.config.funnels:
            evaluate_funnels(self.rt, self.store, self.live, at)
        if send:
            self.drain(at)

    def drain(self, at):
        """Send what is due, a second at a time as the daemon does (receivers' rate
        limits allow about one message a second), until nothing more goes out."""
        for second in range(60):
            if not self.sender.drain(at + timedelta(seconds=second)) and second:
                break

    def stop(self):
        self.store.close()


def csv_slack_config(tmp_path, hook_url: str, extra: str = "",
                     route: str = "{receiver: slack, repeat_interval: 4h}"):
    """A config: the csv source ads.csv, rules.yaml, one Slack receiver at ``hook_url``."""
    return write(tmp_path / "kpimon.yaml", textwrap.dedent(f"""
        global: {{timezone: UTC, locale: en_US}}
        store: {{url: "sqlite:///state/k.db"}}
        sources:
          - {{name: ads, type: csv, path: ads.csv, dimensions: [campaign],
              measures: [cost, conversions], lookback: 7d}}
        rule_files: [rules.yaml]
        receivers:
          - {{name: slack, type: slack, webhook_url: "{hook_url}"}}
        route: {route}
    """) + extra)


@pytest.fixture
def setup(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    csv = write(tmp_path / "ads.csv", CSV_HEADER + "2026-03-12,brand,1000,1\n"
                                                    "2026-03-12,search,1000,10\n")
    config = csv_slack_config(tmp_path, httpserver.url_for(HOOK))
    write(tmp_path / "rules.yaml", """
        groups:
          - name: paid
            rules:
              - alert: CPAHigh
                expr: cpa > 500
                over: 1d
                by: [campaign]
                min_volume: {cost: 100}
                for: 10m
                annotations:
                  summary: "CPA {{ value | money }} on {{ labels.campaign }}"
    """)
    return config, csv, httpserver


def messages(httpserver):
    return [json.loads(req.data)["text"] for req, _ in httpserver.log]


def test_pending_then_firing_then_one_message(setup):
    config, _, server = setup
    app = Instance(config)
    app.cycle(NOW)
    assert app.live.alert_state["state"].to_list() == ["pending"]
    assert messages(server) == []
    app.cycle(NOW + timedelta(minutes=10))
    assert app.live.alert_state["state"].to_list() == ["firing"]
    [text] = messages(server)
    assert "CPA RUB\u00a01,000 on brand" in text
    app.cycle(NOW + timedelta(minutes=20))
    assert len(messages(server)) == 1, "no repeat before repeat_interval"
    app.cycle(NOW + timedelta(hours=4, minutes=10))
    assert len(messages(server)) == 2, "repeated after repeat_interval"


def test_restart_neither_repeats_firing_nor_loses_resolved(setup):
    config, csv, server = setup
    app = Instance(config)
    app.cycle(NOW)
    app.cycle(NOW + timedelta(minutes=10))
    assert len(messages(server)) == 1
    app.stop()

    # Restart: the state comes back from the store; firing stays firing, no new message.
    app = Instance(config)
    assert app.live.alert_state["state"].to_list() == ["firing"]
    app.cycle(NOW + timedelta(minutes=20))
    assert len(messages(server)) == 1

    # The source restates yesterday's conversions while the daemon is down.
    app.stop()
    csv.write_text(CSV_HEADER + "2026-03-12,brand,1000,4\n2026-03-12,search,1000,10\n")
    app = Instance(config)
    app.cycle(NOW + timedelta(minutes=30))
    texts = messages(server)
    assert len(texts) == 2 and "Resolved" in texts[1]
    app.cycle(NOW + timedelta(minutes=40))
    assert len(messages(server)) == 2


def test_a_crash_between_evaluation_and_sending_loses_nothing(setup):
    config, _, server = setup
    app = Instance(config)
    app.cycle(NOW, send=False)
    app.cycle(NOW + timedelta(minutes=10), send=False)  # firing: message queued, not sent
    app.stop()
    assert messages(server) == []
    app = Instance(config)
    app.sender.drain(NOW + timedelta(minutes=11))
    assert len(messages(server)) == 1
    app.sender.drain(NOW + timedelta(minutes=12))
    assert len(messages(server)) == 1


def test_a_broken_csv_keeps_stored_data_and_the_alert(setup):
    config, csv, server = setup
    app = Instance(config)
    app.cycle(NOW)
    app.cycle(NOW + timedelta(minutes=10))
    csv.write_text("date,campaign,cost\n2026-03-12,brand,1000\n")  # conversions column gone
    app.cycle(NOW + timedelta(minutes=20))
    health = app.live.sources["ads"]
    assert not health.up and "missing field(s) conversions" in health.last_error
    states = dict(app.live.alert_state.select("rule", "state").iter_rows())
    assert states == {"CPAHigh": "firing", "KpimonSourceDown": "firing"}
    assert app.store.load_observations(NOW - timedelta(days=3)).height == 2
    assert len(messages(server)) == 2  # CPAHigh once, and the source alert


def test_a_rule_that_fails_at_run_time_is_isolated(setup, tmp_path):
    import dataclasses

    import polars as pl

    config, _, _ = setup
    app = Instance(config)
    app.cycle(NOW)
    [group] = app.rt.rules.groups
    [rule] = group.rules
    # A rule whose expression fails inside polars, next to a healthy copy of it.
    broken = dataclasses.replace(rule, id="Broken", condition=pl.col("no_such") > 1)
    group = dataclasses.replace(group, rules=(rule, broken))
    result = evaluate_group(group, app.rt, app.store, app.live, NOW + timedelta(minutes=1))
    assert set(result.evaluation.errors) == {"Broken"}
    assert "ColumnNotFoundError" in result.evaluation.errors["Broken"]
    assert app.live.alert_state["state"].to_list() == ["pending"], "the healthy rule went on"


def test_metrics_show_the_failing_source_down_and_the_kpis(setup):
    import polars as pl
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from exporters.exposition import Exposition
    from exporters.prometheus import KpimonCollector, Views

    config, csv, _ = setup
    app = Instance(config)
    registry = CollectorRegistry()
    registry.register(KpimonCollector(Views(lambda: app.live, lambda: app.rt,
                                            app.store.outbox_counts)))
    exposition = Exposition(registry)

    def generate_latest(_registry):
        kpis = pl.concat([g.evaluation.kpis for g in app.live.groups.values()])
        return exposition.rebuild(kpis).plain
    app.cycle(NOW)
    csv.write_text("date,campaign,cost,conversions\n2026-03-12,brand,abc,-1\n")
    app.cycle(NOW + timedelta(minutes=1))
    families = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry).decode())}
    assert [s.value for s in families["kpimon_source_up"].samples] == [1.0]
    rejected = families["kpimon_source_rows_rejected"].samples
    assert [(s.name, s.value) for s in rejected] == [("kpimon_source_rows_rejected_total", 1.0)]
    csv.write_text("date,campaign\n2026-03-12,brand\n")
    app.cycle(NOW + timedelta(minutes=2))
    families = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry).decode())}
    assert [s.value for s in families["kpimon_source_up"].samples] == [0.0]
    errors = {s.labels["kind"]: s.value for s in families["kpimon_source_errors"].samples}
    assert errors["parse"] == 1.0 and errors["http"] == 0.0
    assert app.live.sources["ads"].rows_total == 2  # 2 rows, then the only row rejected
    kpi = {s.labels["campaign"]: s.value for s in families["kpimon_kpi_value"].samples}
    assert kpi == {"brand": 1000.0, "search": 100.0}, "stored data still evaluated"
    alert = families["kpimon_alerts"].samples[0]
    assert alert.labels["alertname"] == "CPAHigh" and alert.labels["alertstate"] == "pending"
    series = {(s.labels["rule"], s.labels["status"]): s.value
              for s in families["kpimon_rule_series"].samples}
    # brand holds (CPA 1000); search (CPA 100) is fine.
    assert series == {("CPAHigh", "holding"): 1.0, ("CPAHigh", "ok"): 1.0}


def test_a_failing_source_raises_a_source_alert_and_freezes_its_rules(setup):
    config, csv, server = setup
    app = Instance(config)
    app.cycle(NOW)
    app.cycle(NOW + timedelta(minutes=10))  # CPAHigh firing
    good = csv.read_text()
    # The export is broken AND the stored numbers would now clear the alert: the
    # rule must keep its state rather than resolve on data it cannot trust.
    csv.write_text("date,campaign,cost\n2026-03-12,brand,1000\n")
    app.live.window = type(app.live.window)(app.live.window.frame.with_columns(
        conversions=app.live.window.frame["conversions"] * 10))
    app.cycle(NOW + timedelta(minutes=20))
    states = dict(app.live.alert_state.select("rule", "state").iter_rows())
    assert states == {"CPAHigh": "firing", "KpimonSourceDown": "firing"}
    texts = messages(server)
    assert len(texts) == 2 and "Source ads is failing" in texts[1]
    assert "missing field(s) conversions" in texts[1]
    csv.write_text(good)
    app.cycle(NOW + timedelta(minutes=30))
    states = dict(app.live.alert_state.select("rule", "state").iter_rows())
    assert states["KpimonSourceDown"] == "resolved"
    assert "Resolved" in messages(server)[-1]


def test_a_stale_source_is_an_alert_too(setup):
    config, _, server = setup
    app = Instance(config)
    app.cycle(NOW)
    # No poll for longer than three intervals (5 minutes each by default).
    from monitor.cycle import evaluate_sources as check
    check(app.rt, app.store, app.live, NOW + timedelta(minutes=16))
    states = dict(app.live.alert_state.select("rule", "state").iter_rows())
    assert states["KpimonSourceDown"] == "firing"
    app.sender.drain(NOW + timedelta(minutes=16))
    assert "no successful poll for 960 s" in messages(server)[-1]


def test_pending_time_survives_a_restart(setup):
    config, _, server = setup
    app = Instance(config)
    app.cycle(NOW)  # pending since NOW; for: 10m
    app.stop()
    app = Instance(config)
    app.cycle(NOW + timedelta(minutes=5))
    assert app.live.alert_state["state"].to_list() == ["pending"]
    app.cycle(NOW + timedelta(minutes=10))  # 10 minutes after the first, not the restart
    assert app.live.alert_state["state"].to_list() == ["firing"]
    assert len(messages(server)) == 1
