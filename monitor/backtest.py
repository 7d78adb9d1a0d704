"""``kpimon backtest``: replay history through the same engine and state machine.

The stored history (and, unless told not to, a fresh poll of every source held
in memory) is evaluated at every step between ``--from`` and ``--to``. Each
firing episode is listed with its rule, series, start, end and peak value, and
alerts are counted per rule per ISO week: this is how thresholds are tuned
before a rule file is committed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO

import polars as pl

from monitor import alerts
from monitor.alerts import AlertState
from monitor.config import load_config
from monitor.cycle import WINDOW_MARGIN
from monitor.errors import KpimonError
from monitor.evaluate import evaluate
from monitor.expr import COMPARISONS, BinOp, walk
from monitor.history import load_history
from monitor.rulefile import Rule
from monitor.runtime import build
from monitor.store import from_micros


@dataclass
class Episode:
    rule: str
    alertname: str
    series: str
    start: datetime
    end: datetime | None = None
    peak: float | None = None

    def as_dict(self) -> dict[str, Any]:
        import json

        return {"rule": self.rule, "alertname": self.alertname,
                "labels": json.loads(self.series), "start": self.start.isoformat(),
                "end": self.end.isoformat() if self.end else None, "peak": self.peak}


def direction(rule: Rule) -> int:
    """+1 when higher values are worse (cpa > x), -1 when lower are (cr < x)."""
    text = rule.spec.expr or next(iter(rule.spec.tiers.values()))
    from monitor.expr import parse

    for node in walk(parse(text)):
        if isinstance(node, BinOp) and node.op in COMPARISONS:
            return 1 if node.op in (">", ">=") else -1
    return 1


def history(config: str, start: datetime, end: datetime, poll: bool):
    rt = build(load_config(config), clock=lambda: end)
    return rt, load_history(rt, start - rt.rules.longest_window - WINDOW_MARGIN, end, poll)


def run(config: str, start: datetime, end: datetime, step: timedelta, poll: bool = True,
        progress: TextIO | None = None) -> dict[str, Any]:
    if end <= start:
        raise KpimonError("--to must be after --from")
    rt, frame = history(config, start, end, poll)
    rules = rt.rules.rules
    signs = {r.id: direction(r) for r in rules}
    names = {r.id: r.name for r in rules}
    state = alerts.empty_state()
    cache: dict = {}
    open_episodes: dict[tuple[str, str], Episode] = {}
    episodes: list[Episode] = []
    steps = int((end - start) / step) + 1
    for i in range(steps):
        t = start + i * step
        result = evaluate(rules, frame, t, rt.tz, rt.catalog, cache)
        healthy = [r for r in rules if r.id not in result.errors]
        advanced = alerts.advance(state, result.candidates, healthy, t)
        state = alerts.replace_rules(state, [r.id for r in healthy], advanced.state)
        _track(advanced.transitions, state, open_episodes, episodes, signs, names)
        if progress is not None:
            _bar(progress, i + 1, steps, t)
    if progress is not None:
        progress.write("\n")
    episodes.extend(open_episodes.values())
    episodes.sort(key=lambda e: (e.start, e.rule, e.series))
    weekly = Counter((e.alertname, f"{e.start.isocalendar().year}-W"
                      f"{e.start.isocalendar().week:02d}") for e in episodes)
    return {
        "from": start.isoformat(), "to": end.isoformat(), "step": str(step),
        "evaluations": steps,
        "alerts": [e.as_dict() for e in episodes],
        "per_rule_week": [{"alertname": r, "week": w, "alerts": n}
                          for (r, w), n in sorted(weekly.items())],
    }


def _track(transitions: pl.DataFrame, state: pl.DataFrame,
           open_episodes: dict[tuple[str, str], Episode], done: list[Episode],
           signs: dict[str, int], names: dict[str, str]) -> None:
    for row in transitions.iter_rows(named=True):
        key = (row["rule"], row["series"])
        if row["state"] == AlertState.FIRING:
            open_episodes[key] = Episode(row["rule"], names[row["rule"]], row["series"],
                                         from_micros(row["fired_at"]), peak=row["value"])
        elif row["state"] == AlertState.RESOLVED and key in open_episodes:
            episode = open_episodes.pop(key)
            episode.end = from_micros(row["resolved_at"])
            done.append(episode)
    if not open_episodes:
        return
    firing = state.filter(pl.col("state") == AlertState.FIRING).select("rule", "series", "value")
    for rule, series, value in firing.iter_rows():
        episode = open_episodes.get((rule, series))
        if episode is None or value is None:
            continue
        if episode.peak is None or (value - episode.peak) * signs[rule] > 0:
            episode.peak = value


def _bar(out: TextIO, done: int, total: int, t: datetime) -> None:
    width = 30
    filled = width * done // total
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}% "
              f"{t.isoformat(timespec='minutes')}")
    out.flush()


def table(report: dict[str, Any]) -> str:
    rows = report["alerts"]
    if not rows:
        return (f"no alert would have fired between {report['from']} and {report['to']} "
                f"({report['evaluations']} evaluations)")
    lines = []
    header = ("RULE", "SERIES", "START", "END", "PEAK")
    body = [(r["alertname"] + (f" [{r['rule'].split('/')[1]}]" if "/" in r["rule"] else ""),
             ", ".join(f"{k}={v}" for k, v in r["labels"].items()),
             r["start"][:16], (r["end"] or "still firing")[:16],
             "—" if r["peak"] is None else f"{r['peak']:.4g}") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    lines.append("")
    lines.append("alerts per rule and week:")
    for item in report["per_rule_week"]:
        lines.append(f"  {item['week']}  {item['alertname']:<28} {item['alerts']}")
    lines.append(f"\n{len(rows)} alert(s) over {report['evaluations']} evaluations")
    return "\n".join(lines)
