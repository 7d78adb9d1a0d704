"""Where the shipped data lives: the default rule pack and the templates.

``rules/`` and ``templates/`` are installed as the packages ``kpimon_rules`` and
``kpimon_templates``, so an editable checkout and a plain ``pip install .`` find
them the same way. Config files name the rule pack as ``builtin:<glob>``.
"""

from __future__ import annotations

import glob
from importlib.resources import files
from pathlib import Path

BUILTIN_PREFIX = "builtin:"


def rules_dir() -> Path:
    return Path(str(files("kpimon_rules")))


def templates_dir() -> Path:
    return Path(str(files("kpimon_templates")))


def expand_rule_globs(patterns: list[str], base_dir: Path) -> list[Path]:
    """Rule files named by globs, relative to the config folder or the built-in pack."""
    out: list[Path] = []
    for pattern in patterns:
        if pattern.startswith(BUILTIN_PREFIX):
            root, pattern = rules_dir(), pattern[len(BUILTIN_PREFIX):]
        else:
            root = base_dir
        full = pattern if Path(pattern).is_absolute() else str(root / pattern)
        out.extend(Path(p) for p in sorted(glob.glob(full)) if Path(p).is_file())
    return list(dict.fromkeys(out))
