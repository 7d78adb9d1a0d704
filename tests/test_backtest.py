"""``kpimon backtest`` over the demo: the scheduled incidents and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import write

INCIDENTS = {
    ("yandex_direct", "retargeting", None),   # the CPA spike
    ("meta", "video_views", None),            # high CTR, low conversion, cheap clicks
    (None, None, "promo"),                    # the unsubscribe spike
}


def test_backtest_over_the_demo_lists_only_the_incidents(tmp_path):
    config = write(tmp_path / "kpimon.yaml", """
        global: {timezone: Europe/Moscow}
        store: {url: "sqlite:///k.db"}
        sources: [{name: demo, type: demo}]
        rule_files: ["builtin:*.yaml"]
    """)
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "backtest", "-c", str(config),
         "--from", "2026-02-13", "--to", "2026-03-13T12:00:00+00:00", "--format", "json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    alerts = report["alerts"]
    seen = {(a["labels"].get("channel"), a["labels"].get("campaign"), a["labels"].get("list"))
            for a in alerts}
    assert seen == INCIDENTS
    names = {a["rule"] for a in alerts}
    assert {"CPAAboveTarget/warning", "HighCTRLowConversion", "UnsubscribeSpike"} <= names
    # The incidents began within the last four days before --to.
    assert all(a["start"] >= "2026-03-09" for a in alerts)
    assert report["per_rule_week"] and report["evaluations"] == 28 * 24 + 12 + 1
    table = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "backtest", "-c", str(config),
         "--from", "2026-03-10", "--to", "2026-03-13T12:00:00+00:00"],
        capture_output=True, text=True, timeout=300).stdout
    assert "alerts per rule and week:" in table and "retargeting" in table


def test_backtest_argument_errors(tmp_path):
    config = write(tmp_path / "kpimon.yaml", "rule_files: []\n")
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "backtest", "-c", str(config),
                             "--from", "yesterday"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--from: invalid time" in result.stderr
