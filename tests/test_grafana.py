"""The Grafana boards: provisionable as committed, and every panel query returns
data from a real Prometheus scraping kpimon on the demo source."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from tests.promserver import prometheus, query, try_query
from tests.test_daemon import HOOK, Daemon, wait_for

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "grafana" / "dashboards"
VARIABLES = {"$channel": "yandex_direct", "$campaign": "retargeting"}


def boards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(BOARDS.glob("*.json"))}


def test_boards_are_generated_provisionable_and_use_the_fixed_datasource():
    out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'grafana');"
                          "import generate, json; print(json.dumps(generate.render()))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    generated = json.loads(out.stdout)
    assert set(generated) == {p.name for p in BOARDS.glob("*.json")}
    for name, text in generated.items():
        assert (BOARDS / name).read_text() == text, "run: python grafana/generate.py"
    source = yaml.safe_load((ROOT / "grafana/provisioning/datasources/kpimon.yaml").read_text())
    uid = source["datasources"][0]["uid"]
    uids = set()
    for name, board in boards().items():
        assert "${DS_" not in json.dumps(board)
        assert board["id"] is None and board["uid"].startswith("kpimon-")
        uids.add(board["uid"])
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == uid, (name, panel["title"])
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    assert len(uids) == 4
    overview = boards()["overview.json"]
    assert [p["title"].split(":")[0] for p in overview["panels"] if p["type"] == "row"] == [
        "Goals", "Business", "Marketing", "Tactical"]


def substitute(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def test_every_panel_query_returns_data_from_prometheus(tmp_path, httpserver):
    httpserver.expect_request(HOOK).respond_with_data("ok")
    d = Daemon(tmp_path, httpserver.url_for(HOOK), rule_files='["builtin:*.yaml"]')
    try:
        with prometheus(tmp_path, d.port) as base:
            # The demo's incidents fire after `for: 30s`; the boards show them.
            wait_for(lambda: try_query(base, 'kpimon_alerts{alertstate="firing"}'), timeout=90)
            # Panels that show increase() over counters need a few scrapes.
            wait_for(lambda: try_query(base, 'count_over_time(up{job="kpimon"}[5m]) > 3'),
                     timeout=60)
            missing = []
            for name, board in boards().items():
                for var in board["templating"]["list"]:
                    m = re.fullmatch(r"label_values\((.*), (\w+)\)",
                                     substitute(var["definition"]))
                    values = requests.get(f"{base}/api/v1/label/{m.group(2)}/values",
                                          params={"match[]": m.group(1)}, timeout=5).json()
                    assert VARIABLES[f"${var['name']}"] in values["data"], (name, values)
                for panel in board["panels"]:
                    for target in panel.get("targets", []):
                        if not query(base, substitute(target["expr"])):
                            missing.append(f"{name}: {panel['title']}: {target['expr']}")
            assert not missing, "\n".join(missing)
    finally:
        d.stop()
