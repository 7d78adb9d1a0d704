"""``kpimon test``: unit tests for rule files, in the spirit of ``promtool test rules``.

A test file names rule files and lists tests. Each test gives input series in a
compact notation, one value per ``interval`` from ``start``, and the alerts
expected to be firing at given evaluation times, with their labels and
(rendered) annotations. The rules are evaluated at every ``evaluation_interval``
from ``start`` on, through the same engine and state machine as the daemon, so
``for`` and ``keep_firing_for`` behave exactly as in production.

Value notation (as promtool): ``1 2 3``; ``5x3`` is 5 5 5 5; ``1+2x3`` is
1 3 5 7; ``10-1x2`` is 10 9 8; ``_`` is a missing value and ``_x3`` four of them.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor import alerts
from monitor.alerts import AlertState
from monitor.dispatch import AlertViews
from monitor.durations import Duration, parse_duration
from monitor.errors import ConfigError, Problem
from monitor.evaluate import evaluate
from monitor.kpis import Catalog
from monitor.resources import templates_dir
from monitor.rulefile import RuleSet, Vocabulary, load_rules
from monitor.sources.base import TS, TS_DTYPE
from monitor.templating import Templates
from monitor.yamlsrc import load_yaml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class InputSeries(_Strict):
    labels: dict[str, str] = Field(default_factory=dict)
    values: dict[str, str] = Field(description="measure -> values in the compact notation")


class ExpectedAlert(_Strict):
    exp_labels: dict[str, str] = Field(default_factory=dict)
    exp_annotations: dict[str, str] = Field(default_factory=dict,
                                            description="Only the keys given are compared.")


class AlertTest(_Strict):
    eval_time: str = Field(description="A duration after start (7d12h) or an ISO time.")
    alertname: str
    exp_alerts: list[ExpectedAlert] = Field(default_factory=list)


class TestCase(_Strict):
    name: str = ""
    interval: Duration = Field(default="1d", description="Spacing of input values.")
    evaluation_interval: Duration | None = Field(
        default=None, description="How often rules are evaluated (besides exactly at every "
        "eval_time); defaults to the input interval.")
    start: datetime = Field(default=datetime(2026, 1, 5, tzinfo=UTC),
                            description="Period start of the first value.")
    input_series: list[InputSeries] = Field(default_factory=list)
    alert_rule_test: list[AlertTest] = Field(default_factory=list)

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        if isinstance(v, date) and not isinstance(v, datetime):
            return datetime.combine(v, datetime.min.time(), UTC)
        return v


class TestFile(_Strict):
    rule_files: list[str]
    timezone: str = "UTC"
    locale: str = "en_US"
    currency: str = "RUB"
    tests: list[TestCase]


_TERM = re.compile(r"^(?P<a>-?\d+(?:\.\d+)?|_)(?:(?P<sign>[+-])(?P<b>\d+(?:\.\d+)?))?"
                   r"(?:x(?P<n>\d+))?$")


def expand_values(text: str) -> list[float | None]:
    """The promtool series notation: ``1+2x3 _ 5x2`` -> 1 3 5 7 None 5 5 5."""
    out: list[float | None] = []
    for term in str(text).split():
        m = _TERM.match(term)
        if not m or (m.group("a") == "_" and m.group("b")):
            raise ValueError(f"invalid series term {term!r}; use forms like 5, 5x3, 1+2x3, _x2")
        n = int(m.group("n")) if m.group("n") is not None else 0
        if m.group("a") == "_":
            out.extend([None] * (n + 1))
            continue
        a = float(m.group("a"))
        b = float(m.group("b") or 0) * (-1 if m.group("sign") == "-" else 1)
        out.extend(a + b * i for i in range(n + 1))
    return out


@dataclass
class Failure:
    test: str
    at: str
    alertname: str
    expected: list[dict[str, Any]]
    got: list[dict[str, Any]]

    def __str__(self) -> str:
        def show(items: list[dict[str, Any]]) -> str:
            if not items:
                return "    (none)"
            return "\n".join(f"    labels={_fmt(a['labels'])}"
                             + (f" annotations={_fmt(a['annotations'])}" if a["annotations"]
                                else "") for a in items)
        return (f"  FAILED {self.test!r} at {self.at}, alertname {self.alertname}:\n"
                f"   expected:\n{show(self.expected)}\n   got:\n{show(self.got)}")


def _spaces(text: str | None) -> str | None:
    """Locale formats use no-break spaces ("650\u00a0₽"); tests may write plain ones."""
    return None if text is None else text.replace("\u00a0", " ").replace("\u202f", " ")


def _fmt(d: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in sorted(d.items())) + "}"


@dataclass
class FileResult:
    file: str
    tests: list[tuple[str, list[Failure], float]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for _, failures, _ in self.tests if failures)


def run_file(path: Path) -> FileResult:
    doc = load_yaml(path)
    spec: TestFile = validate(doc, TestFile.model_validate)
    tz = ZoneInfo(spec.timezone)
    catalog = Catalog()
    measures = {m for t in spec.tests for s in t.input_series for m in s.values}
    templates = Templates([templates_dir()], catalog, spec.currency, spec.locale)
    rule_paths = [(path.parent / f).resolve() for f in spec.rule_files]
    missing = [str(p) for p in rule_paths if not p.is_file()]
    if missing:
        raise ConfigError([doc.problem(("rule_files",), f"no such rule file: {m}")
                           for m in missing])
    rules = load_rules(rule_paths, Vocabulary(catalog, frozenset(catalog.measures | measures)),
                       templates)
    result = FileResult(str(path))
    for i, case in enumerate(spec.tests):
        t0 = time.perf_counter()
        try:
            frame = _input_frame(case)
        except ValueError as exc:
            raise ConfigError([doc.problem(("tests", i, "input_series"), str(exc))]) from None
        failures = _run_case(case, frame, rules, tz, catalog, f"{case.name or f'test {i}'}")
        result.tests.append((case.name or f"test {i}", failures, time.perf_counter() - t0))
    return result


def _input_frame(case: TestCase) -> pl.DataFrame:
    labels = sorted({k for s in case.input_series for k in s.labels})
    measures = sorted({m for s in case.input_series for m in s.values})
    rows = []
    for series in case.input_series:
        expanded = {m: expand_values(v) for m, v in series.values.items()}
        length = max((len(v) for v in expanded.values()), default=0)
        for i in range(length):
            ts = case.start + i * case.interval
            values = [expanded.get(m, [])[i] if i < len(expanded.get(m, [])) else None
                      for m in measures]
            if all(v is None for v in values):
                continue  # a gap
            rows.append((ts, *(series.labels.get(k) for k in labels), *values))
    schema = {TS: TS_DTYPE, **dict.fromkeys(labels, pl.String),
              **dict.fromkeys(measures, pl.Float64)}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _eval_times(case: TestCase) -> list[tuple[datetime, AlertTest]]:
    out = []
    for check in case.alert_rule_test:
        try:
            at = datetime.fromisoformat(check.eval_time)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
        except ValueError:
            at = case.start + parse_duration(check.eval_time)
        out.append((at, check))
    return sorted(out, key=lambda x: x[0])


def _run_case(case: TestCase, frame: pl.DataFrame, rules: RuleSet, tz: ZoneInfo,
              catalog: Catalog, name: str) -> list[Failure]:
    views = AlertViews(rules, catalog)
    checks = _eval_times(case)
    if not checks:
        return []
    state = alerts.empty_state()
    cache: dict = {}
    failures = []
    pending = list(checks)
    step = case.evaluation_interval or case.interval
    end = checks[-1][0]
    # Evaluate on the grid start + k * step, and also exactly at every check time.
    grid = (case.start + k * step for k in range(int((end - case.start) / step) + 2))
    times = sorted({t for t in grid if t <= end} | {at for at, _ in checks})
    for t in times:
        result = evaluate(rules.rules, frame, t, tz, catalog, cache)
        healthy = [r for r in rules.rules if r.id not in result.errors]
        advanced = alerts.advance(state, result.candidates, healthy, t)
        state = alerts.replace_rules(state, [r.id for r in healthy], advanced.state)
        while pending and pending[0][0] == t:
            at, check = pending.pop(0)
            failure = _compare(check, _firing(state, views, check.alertname), name, at)
            if failure:
                failures.append(failure)
    return failures


def _firing(state: pl.DataFrame, views: AlertViews, alertname: str) -> list[dict[str, Any]]:
    rows = state.filter(pl.col("state") == AlertState.FIRING)
    out = []
    for row in rows.iter_rows(named=True):
        alert = views.build(row)
        if alert["labels"]["alertname"] == alertname:
            out.append(alert)
    return out


def _compare(check: AlertTest, got: list[dict[str, Any]], name: str, at: datetime,
             ) -> Failure | None:
    expected = [{"labels": {"alertname": check.alertname, **e.exp_labels},
                 "annotations": e.exp_annotations} for e in check.exp_alerts]
    remaining = list(got)
    for exp in expected:
        match = next((g for g in remaining if g["labels"] == exp["labels"] and all(
            _spaces(g["annotations"].get(k)) == _spaces(v)
            for k, v in exp["annotations"].items())), None)
        if match is None:
            break
        remaining.remove(match)
    else:
        if not remaining:
            return None
    shown = [{"labels": g["labels"], "annotations": {
        k: v for k, v in g["annotations"].items()
        if any(k in e["annotations"] for e in expected)}} for g in got]
    return Failure(name, at.isoformat(), check.alertname, expected, shown)


def run(paths: list[str], junit: str | None = None) -> tuple[int, str]:
    """Run test files; returns (number of failed tests, the report)."""
    lines, results, failed = [], [], 0
    problems: list[Problem] = []
    for p in paths:
        try:
            res = run_file(Path(p))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        results.append(res)
        failed += res.failed
        status = "FAILED" if res.failed else "SUCCESS"
        lines.append(f"{p}: {status} ({len(res.tests)} test(s), {res.failed} failed)")
        for _, failures, _ in res.tests:
            lines.extend(str(f) for f in failures)
    if problems:
        raise ConfigError(problems)
    if junit:
        _write_junit(results, junit)
    return failed, "\n".join(lines)


def _write_junit(results: list[FileResult], path: str) -> None:
    suites = ET.Element("testsuites")
    for res in results:
        suite = ET.SubElement(suites, "testsuite", name=res.file, tests=str(len(res.tests)),
                              failures=str(res.failed))
        for name, failures, seconds in res.tests:
            case = ET.SubElement(suite, "testcase", classname=res.file, name=name,
                                 time=f"{seconds:.3f}")
            for f in failures:
                ET.SubElement(case, "failure", message=f"{f.alertname} at {f.at}").text = str(f)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)

