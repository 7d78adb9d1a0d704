"""``kpimon test``: the notation, failures with diffs, JUnit, and the shipped rule pack."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from monitor.ruletest import expand_values, run
from tests.conftest import write

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("text", "values"), [
    ("1 2 3", [1, 2, 3]),
    ("5x3", [5, 5, 5, 5]),
    ("1+2x3", [1, 3, 5, 7]),
    ("10-1x2", [10, 9, 8]),
    ("_ 4 _x2 -1.5", [None, 4, None, None, None, -1.5]),
])
def test_series_notation(text, values):
    assert expand_values(text) == values


@pytest.mark.parametrize("bad", ["1x", "abc", "_+1x2", "1++2"])
def test_bad_notation(bad):
    with pytest.raises(ValueError, match="invalid series term"):
        expand_values(bad)


def test_the_shipped_rule_pack_passes_its_tests():
    files = sorted(str(p) for p in (ROOT / "rules" / "tests").glob("*_test.yaml"))
    assert len(files) >= 5
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "test", *files],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def every_rule_has_a_test() -> tuple[set[str], set[str]]:
    import yaml

    rules = {r["alert"] for f in (ROOT / "rules").glob("*.yaml")
             for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]}
    tested = {t["alertname"] for f in (ROOT / "rules" / "tests").glob("*_test.yaml")
              for case in yaml.safe_load(f.read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    return rules, tested


def test_every_shipped_rule_has_a_firing_test():
    rules, tested = every_rule_has_a_test()
    assert rules - tested == set()


RULES = """
groups:
  - name: g
    rules:
      - alert: CPAHigh
        expr: cpa > 500
        over: 1d
        by: [campaign]
        for: 2h
        annotations: {summary: "CPA {{ value | money }}"}
"""


def test_failures_show_a_diff_and_write_junit(tmp_path):
    write(tmp_path / "rules.yaml", RULES)
    test_file = write(tmp_path / "t.yaml", """
        rule_files: [rules.yaml]
        tests:
          - name: pending then firing
            start: 2026-03-02
            input_series:
              - labels: {campaign: a}
                values: {cost: "1000 1000", conversions: "1 1"}
            alert_rule_test:
              - eval_time: 1d1h
                alertname: CPAHigh              # still pending: for is 2h
              - eval_time: 1d2h
                alertname: CPAHigh
                exp_alerts:
                  - exp_labels: {campaign: a}
                    exp_annotations: {summary: "CPA RUB 1,000"}
          - name: wrong expectation
            start: 2026-03-02
            input_series:
              - labels: {campaign: a}
                values: {cost: "1000", conversions: "1"}
            alert_rule_test:
              - eval_time: 1d3h
                alertname: CPAHigh
                exp_alerts:
                  - exp_labels: {campaign: b}
    """)
    junit = tmp_path / "junit.xml"
    failed, report = run([str(test_file)], str(junit))
    assert failed == 1
    assert "FAILED 'wrong expectation'" in report
    assert "expected:\n    labels={alertname='CPAHigh', campaign='b'}" in report
    assert "got:\n    labels={alertname='CPAHigh', campaign='a'}" in report
    suite = ET.parse(junit).getroot()[0]
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "test", str(test_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1


def test_a_broken_test_file_is_a_located_error(tmp_path):
    write(tmp_path / "rules.yaml", RULES)
    test_file = write(tmp_path / "t.yaml", """
        rule_files: [rules.yaml]
        tests:
          - name: x
            input_series:
              - labels: {campaign: a}
                values: {cost: "1000 oops"}
    """)
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "test", str(test_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "t.yaml:" in result.stderr and "invalid series term 'oops'" in result.stderr
    assert "Traceback" not in result.stderr
