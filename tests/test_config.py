"""Config and rule files: strict validation, every error located, secrets kept secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.runtime import build

ROOT = Path(__file__).resolve().parent.parent


def kpimon(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=60)


def test_example_config_checks_clean():
    result = kpimon("check", "-c", str(ROOT / "config.example.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok: 1 source(s)" in result.stdout


def test_broken_config_lists_every_error_with_line_and_column(tmp_path):
    text = (ROOT / "config.example.yaml").read_text()
    text = text.replace("timezone: Europe/Moscow", "timezone: Mars/Olympus")
    text = text.replace("evaluation_interval: 15s", "evaluation_interval: soon")
    text = text.replace("server:\n", "server:\n  colour: blue\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    result = kpimon("check", "-c", str(broken))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = text.splitlines()
    expected = {
        "global.timezone": lines.index("  timezone: Mars/Olympus        # day boundaries of "
                                       "rule windows") + 1,
        "global.evaluation_interval": next(i for i, line in enumerate(lines)
                                           if "evaluation_interval: soon" in line) + 1,
        "server.colour": lines.index("  colour: blue") + 1,
    }
    for path, line in expected.items():
        assert f"{broken}:{line}:" in result.stderr and f": {path}: " in result.stderr, \
            result.stderr
    assert "unknown key" in result.stderr
    assert "unknown timezone 'Mars/Olympus'" in result.stderr


def test_yaml_syntax_error_is_located(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("global:\n  timezone: [UTC\nstore: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(bad), 3)
    assert "YAML syntax" in problem.message


def test_duplicate_keys_are_errors(tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text("global:\n  currency: RUB\n  currency: USD\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:3:3: global.currency: duplicate key"):
        load_config(bad)


def test_environment_interpolation_and_secrets_never_printed(make_config):
    path = make_config("""
        receivers:
          - name: team
            type: slack
            webhook_url: ${TEST_SLACK_URL}
        route: {receiver: team}
    """)
    loaded = load_config(path, env={"TEST_SLACK_URL": "https://hooks.example/T0/B0/s3cr3t"})
    receiver = loaded.config.receivers[0]
    assert receiver.webhook_url.get_secret_value() == "https://hooks.example/T0/B0/s3cr3t"
    for text in (repr(loaded.config), str(receiver), receiver.model_dump_json()):
        assert "s3cr3t" not in text
    with pytest.raises(ConfigError, match="environment variable TEST_SLACK_URL is not set"):
        load_config(path, env={})


def test_route_must_name_defined_receivers(make_config):
    path = make_config("""
        receivers: [{name: log, type: log}]
        route:
          receiver: log
          routes: [{matchers: ['severity="critical"'], receiver: pager}]
    """)
    with pytest.raises(ConfigError, match="route names receiver 'pager'"):
        load_config(path)


def test_invalid_matcher_is_reported(make_config):
    path = make_config("""
        route:
          receiver: log
          routes: [{matchers: ['severity=~"(unclosed"'], receiver: log}]
    """)
    with pytest.raises(ConfigError, match=r"kpimon.yaml:3:\d+: route.routes\[0\]."
                                          r"matchers\[0\]: invalid regex"):
        load_config(path)


RULES_OK = """
    groups:
      - name: g
        rules:
          - alert: CPAHigh
            expr: cpa > 650
            over: 7d
            by: [channel]
"""


def test_rule_errors_point_at_the_character_with_suggestions(make_config):
    path = make_config("rule_files: [rules/*.yaml]\n", {"bad.yaml": """
        groups:
          - name: g
            rules:
              - alert: Typo
                expr: cpaa > 650 and ctr > 1%
              - alert: Syntax
                expr: "cpa > > 3"
              - alert: NotACondition
                expr: cost / clicks
              - alert: BadVolume
                expr: cpa > 1
                min_volume: {conversoins: 5}
              - alert: Typo
                expr: ctr < 1%
                annotations: {summary: "{{ value | money }"}
              - alert: Extra
                expr: ctr < 1%
                colour: red
    """})
    with pytest.raises(ConfigError) as info:
        build(load_config(path))
    text = str(info.value)
    bad = str(path.parent / "rules" / "bad.yaml")
    assert f"{bad}:5:15: groups[0].rules[0].expr: unknown KPI or measure 'cpaa'; did you " \
           "mean 'cpa'?" in text
    assert "      expr: cpaa > 650 and ctr > 1%\n                ^" in text
    assert f"{bad}:7:22: groups[0].rules[1].expr: expected a number" in text
    assert "expr: must be a condition" in text
    assert "unknown measure 'conversoins'; did you mean 'conversions'?" in text
    assert f"{bad}:18:9: groups[0].rules[5].colour: unknown key" in text
    assert "alert 'Typo' is already defined" in text
    assert "template:" in text


def test_unknown_label_in_by_is_a_warning_with_a_suggestion(make_config):
    path = make_config("""
        sources: [{name: demo, type: demo}]
        rule_files: [rules/*.yaml]
    """, {"r.yaml": RULES_OK.replace("by: [channel]", "by: [chanel]")})
    result = kpimon("check", "-c", str(path))
    assert result.returncode == 0
    assert "warning: " in result.stderr
    assert "r.yaml:7:14: groups[0].rules[0].by[0]: no source has the label 'chanel' yet, " \
           "so the rule has no series; did you mean 'channel'?" in result.stderr


def test_missing_rule_files_are_reported(make_config):
    path = make_config("rule_files: [nowhere/*.yaml]\n")
    with pytest.raises(ConfigError, match=r"no rule file matches 'nowhere/\*\.yaml'"):
        build(load_config(path))


def test_check_catches_a_broken_receiver_template(make_config, tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "mine.txt.j2").write_text("{{ alerts[0].labels.nope.deeper }}\n")
    path = make_config("""
        templates: [tpl]
        rule_files: [rules/*.yaml]
        receivers: [{name: log, type: log, template: mine.txt.j2}]
    """, {"r.yaml": RULES_OK})
    with pytest.raises(ConfigError, match="template error"):
        build(load_config(path))


def test_schema_command_prints_json_schema():
    import json

    result = kpimon("schema")
    schema = json.loads(result.stdout)
    assert "global" in schema["properties"]
    rules = json.loads(kpimon("schema", "rules").stdout)
    assert "groups" in rules["properties"]


def test_nothing_secret_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    for name in tracked.stdout.split():
        if name.endswith((".yaml", ".yml", ".env")):
            text = (ROOT / name).read_text(encoding="utf-8")
            assert "hooks.slack.com/services/" not in text, name


def test_committed_editor_schemas_are_current():
    import json

    for kind in ("config", "rules", "tests"):
        generated = json.loads(kpimon("schema", kind).stdout)
        committed = json.loads((ROOT / "docs" / "schema" / f"{kind}.schema.json").read_text())
        assert generated == committed, f"run: kpimon schema {kind} > docs/schema/{kind}.schema.json"
