"""The alertmanager receiver against a real Alertmanager: firing, leases, resolve, HA."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from monitor.outbox import merge
from notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from notifiers.base import Notification, RetryableError
from tests.amserver import active_alerts, alertmanager
from tests.conftest import write
from tests.promserver import free_port
from tests.test_pipeline import Instance


def alert(status: str, campaign: str = "brand", ends: datetime | None = None) -> dict:
    now = datetime.now(UTC)
    return {"status": status, "labels": {"alertname": "CPAHigh", "campaign": campaign,
                                         "severity": "warning", "empty": ""},
            "annotations": {"summary": f"CPA high on {campaign}"}, "value": 812.5,
            "startsAt": (now - timedelta(minutes=5)).isoformat(),
            "endsAt": (ends or now).isoformat() if status == "resolved" else None,
            "generatorURL": "http://kpimon/api/v1/alerts"}


@pytest.fixture(scope="module")
def am(tmp_path_factory):
    with alertmanager(tmp_path_factory.mktemp("am")) as base:
        yield base


def notifier(*urls: str, **kw) -> AlertmanagerNotifier:
    return AlertmanagerNotifier(AlertmanagerConfig(name="am", type="alertmanager",
                                                   urls=list(urls), **kw))


def test_firing_alerts_are_listed_with_a_lease_and_resolving_ends_them(am):
    n = notifier(am, lease="5m")
    n.send(Notification("am", "firing", (alert("firing"), alert("firing", "search")), {}))
    listed = {a["labels"]["campaign"]: a for a in active_alerts(am)}
    assert set(listed) == {"brand", "search"}
    brand = listed["brand"]
    assert "empty" not in brand["labels"] and brand["annotations"]["value"] == "812.5"
    assert brand["status"]["state"] == "active"
    ends = datetime.fromisoformat(brand["endsAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=4) < ends - datetime.now(UTC) <= timedelta(minutes=5)
    n.send(Notification("am", "resolved", (alert("resolved"),), {}))
    assert [a["labels"]["campaign"] for a in active_alerts(am)] == ["search"]


def test_one_live_member_of_an_ha_pair_is_enough(am):
    down = f"http://127.0.0.1:{free_port()}"
    notifier(down, am).send(Notification("am", "firing", (alert("firing", "ha"),), {}))
    assert "ha" in {a["labels"]["campaign"] for a in active_alerts(am)}
    with pytest.raises(RetryableError):
        notifier(down).send(Notification("am", "firing", (alert("firing", "x"),), {}))


def test_the_daemon_pipeline_fires_renews_and_resolves_in_alertmanager(am, tmp_path):
    csv = write(tmp_path / "ads.csv", "date,campaign,cost,conversions\n"
                                      "2026-03-12,amcampaign,1000,1\n")
    write(tmp_path / "rules.yaml", """
        groups:
          - name: paid
            rules:
              - alert: CPAHigh
                expr: cpa > 500
                by: [campaign]
    """)
    config = write(tmp_path / "kpimon.yaml", textwrap.dedent(f"""
        global: {{timezone: UTC}}
        store: {{url: "sqlite:///k.db"}}
        sources:
          - {{name: ads, type: csv, path: ads.csv, dimensions: [campaign],
              measures: [cost, conversions]}}
        rule_files: [rules.yaml]
        receivers:
          - {{name: am, type: alertmanager, urls: ["{am}"], lease: 3m}}
        route: {{receiver: am}}
    """))
    from monitor import leases

    now = datetime(2026, 3, 13, 12, tzinfo=UTC)
    app = Instance(config)
    app.cycle(now)
    mine = [a for a in active_alerts(am) if a["labels"].get("campaign") == "amcampaign"]
    assert len(mine) == 1 and mine[0]["labels"]["alertname"] == "CPAHigh"
    assert leases.renew(app.rt, app.live.alert_state, app.store, now) == 1
    csv.write_text("date,campaign,cost,conversions\n2026-03-12,amcampaign,100,1\n")
    app.cycle(now + timedelta(minutes=1))
    assert not [a for a in active_alerts(am) if a["labels"].get("campaign") == "amcampaign"]
    assert leases.renew(app.rt, app.live.alert_state, app.store, now) == 0


def test_merge_keeps_the_latest_state_of_each_alert():
    first = {"status": "firing", "alerts": [alert("firing")], "groupLabels": {}}
    second = {"status": "resolved", "alerts": [alert("resolved")], "groupLabels": {}}
    merged = merge("am", [json.loads(json.dumps(p)) for p in (first, second)])
    assert [a["status"] for a in merged.alerts] == ["resolved"]
