"""Inhibition: a firing critical alert mutes the warning for the same campaign."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.conftest import NOW, write
from tests.test_pipeline import HOOK, Instance, csv_slack_config


def test_critical_mutes_warning_for_the_same_campaign_only(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    csv = write(tmp_path / "ads.csv", "date,campaign,cost,conversions\n"
                                      "2026-03-12,brand,1000,1\n2026-03-12,search,600,1\n")
    config = csv_slack_config(tmp_path, httpserver.url_for(HOOK),
                              route="{receiver: slack, group_by: [alertname, campaign]}",
                              extra="""
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [campaign]
""")
    write(tmp_path / "rules.yaml", """
        groups:
          - name: paid
            rules:
              - alert: CPAHigh
                expr: cpa > 500
                by: [campaign]
                labels: {severity: warning}
              - alert: CPAVeryHigh
                expr: cpa > 900
                by: [campaign]
                labels: {severity: critical}
    """)
    app = Instance(config)
    app.cycle(NOW)
    sent = [json.loads(r.data)["text"] for r, _ in httpserver.log]
    # brand: 1000 (critical and warning: the warning is muted); search: 600 (warning only).
    assert len(sent) == 2
    assert any("CPAVeryHigh" in t and "brand" in t for t in sent)
    assert any("CPAHigh" in t and "search" in t for t in sent)
    assert not any("CPAHigh*" in t and "brand" in t for t in sent)
    # When brand recovers, nobody hears "resolved" for the warning never sent.
    csv.write_text("date,campaign,cost,conversions\n2026-03-12,brand,100,1\n"
                   "2026-03-12,search,600,1\n")
    app.cycle(NOW + timedelta(minutes=1))
    resolved = [json.loads(r.data)["text"] for r, _ in httpserver.log][2:]
    assert len(resolved) == 1 and "Resolved" in resolved[0] and "CPAVeryHigh" in resolved[0]
