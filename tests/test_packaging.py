"""A plain (non-editable) install still finds the rule pack and the templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_rules_and_templates_and_finds_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    [wheel] = tmp_path.glob("kpimon-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "kpimon_rules/paid.yaml" in names
    assert "kpimon_templates/slack.md.j2" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300, capture_output=True)
    # From an unrelated folder, with only the installed copy on the path first.
    code = ("from monitor.resources import rules_dir, templates_dir;"
            "print(rules_dir()); print(templates_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(target)}).stdout
    rules, templates = map(Path, out.split())
    assert rules.is_relative_to(target) and (rules / "email.yaml").is_file()
    assert templates.is_relative_to(target) and (templates / "log.txt.j2").is_file()
