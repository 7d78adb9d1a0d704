"""``kpimon eval``: one evaluation of every rule, printed for a person or as JSON.

It reads the stored history and, unless told not to, polls the sources once
into memory (nothing is written), then evaluates at ``--at``. The status column
says what the daemon would do: firing (the condition holds; it fires once it has
held for ``for``), ok, or "not enough data" when a ``min_volume`` guard is unmet.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import polars as pl

from monitor.config import load_config
from monitor.cycle import WINDOW_MARGIN
from monitor.errors import KpimonError
from monitor.evaluate import evaluate
from monitor.history import load_history
from monitor.runtime import build

log = logging.getLogger("kpimon.eval")


def run_eval(config_path: str, at: datetime, rule: str | None = None,
             poll: bool = True) -> list[dict[str, Any]]:
    rt = build(load_config(config_path), clock=lambda: at)
    rules = [r for r in rt.rules.rules if rule is None or rule in (r.name, r.id)]
    if rule and not rules:
        raise KpimonError(f"no rule named {rule!r}")
    frame = load_history(rt, at - rt.history - WINDOW_MARGIN, at, poll)
    result = evaluate(rules, frame, at, rt.tz, rt.catalog)
    rows = []
    for r in result.candidates.sort("rule", "series").iter_rows(named=True):
        status = ("firing" if r["active"] and r["sufficient"] else
                  "not enough data" if not r["sufficient"] else "ok")
        rows.append({"rule": r["rule"], "labels": json.loads(r["series"]), "value": r["value"],
                     "kpis": json.loads(r["kpi_values"]), "status": status})
    for name, error in result.errors.items():
        rows.append({"rule": name, "labels": {}, "value": None, "kpis": {},
                     "status": f"error: {error}"})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no series: the sources have no data in the rules' windows"
    frame = pl.DataFrame({
        "RULE": [r["rule"] for r in rows],
        "SERIES": [", ".join(f"{k}={v}" for k, v in r["labels"].items()) for r in rows],
        "KPIS": [" ".join(f"{k}={_fmt(v)}" for k, v in r["kpis"].items()) for r in rows],
        "STATUS": [r["status"] for r in rows],
    })
    widths = {c: max(len(c), *(len(v) for v in frame[c])) for c in frame.columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in frame.columns)]
    lines += ["  ".join(str(v).ljust(widths[c]) for c, v in zip(frame.columns, row, strict=True))
              for row in frame.iter_rows()]
    firing = sum(r["status"] == "firing" for r in rows)
    lines.append(f"\n{len(rows)} series, {firing} firing")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"
