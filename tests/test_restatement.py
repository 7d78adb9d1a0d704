"""Restatement end to end: a warehouse (real PostgreSQL) changes yesterday's conversions,
the next poll re-reads the lookback window, the KPI follows, the alert fires and resolves.
The store is PostgreSQL too."""

from __future__ import annotations

import json
import textwrap
from datetime import date, timedelta

import sqlalchemy as sa

from tests.conftest import NOW, write
from tests.test_pipeline import HOOK, Instance


def test_restated_conversions_fire_and_resolve_the_alert(tmp_path, postgres, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    warehouse = postgres.fresh_database()
    engine = sa.create_engine(warehouse)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE conversions_daily (day DATE, campaign TEXT, "
                          "cost NUMERIC(12,2), conversions INTEGER)")
        for back in range(1, 8):
            c.execute(sa.text("INSERT INTO conversions_daily VALUES (:d, 'brand', 1000, 4)"),
                      {"d": date(2026, 3, 13) - timedelta(days=back)})
    write(tmp_path / "rules.yaml", """
        groups:
          - name: paid
            rules:
              - alert: CPAHigh
                expr: cpa > 500
                over: 1d
                by: [campaign]
                for: 10m
                annotations:
                  summary: "CPA {{ value | money }} on {{ labels.campaign }}"
    """)
    config = write(tmp_path / "kpimon.yaml", textwrap.dedent(f"""
        global: {{timezone: UTC, locale: en_US}}
        store: {{url: "{postgres.fresh_database()}"}}
        sources:
          - name: warehouse
            type: sql
            url: "{warehouse}"
            parameters: date
            query: >-
              SELECT day AS date, campaign, cost, conversions FROM conversions_daily
              WHERE day >= :start AND day <= :end
            dimensions: [campaign]
            measures: [cost, conversions]
            lookback: 7d
        rule_files: [rules.yaml]
        receivers:
          - {{name: slack, type: slack, webhook_url: "{httpserver.url_for(HOOK)}"}}
        route: {{receiver: slack}}
    """))

    def cpa(app: Instance) -> float:
        kpis = app.live.groups["paid"].evaluation.kpis
        return kpis.filter(kpi="cpa", family="kpi")["value"][0]

    def restate(conversions: int) -> None:
        with engine.begin() as c:
            c.execute(sa.text("UPDATE conversions_daily SET conversions = :n WHERE day = :d"),
                      {"n": conversions, "d": date(2026, 3, 12)})

    app = Instance(config)
    app.cycle(NOW)
    assert cpa(app) == 250.0 and app.live.alert_state.height == 0

    restate(1)  # yesterday's conversions restated down: CPA 1000
    app.cycle(NOW + timedelta(minutes=5))
    assert cpa(app) == 1000.0
    assert app.live.alert_state["state"].to_list() == ["pending"]
    app.cycle(NOW + timedelta(minutes=15))
    assert app.live.alert_state["state"].to_list() == ["firing"]

    restate(5)  # and back up: CPA 200, resolved
    app.cycle(NOW + timedelta(minutes=20))
    assert cpa(app) == 200.0
    texts = [json.loads(req.data)["text"] for req, _ in httpserver.log]
    assert len(texts) == 2 and "1,000" in texts[0] and "Resolved" in texts[1]
    # Re-reads replaced rows: one row per day, never duplicates.
    frame = app.store.load_observations(NOW - timedelta(days=30))
    assert frame.height == 7
    app.stop()
    engine.dispose()
