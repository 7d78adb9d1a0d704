"""Reports: a period's KPIs against the previous period and the plan, with charts.

``last-week`` (Monday to Sunday) is the operational report, ``last-month`` the
strategic one. For each main KPI (the owner's goal KPIs first, then the account's
main KPIs that the data has): the value, the previous period's, the change (in
percentage points for ratios, in percent otherwise), the target and plan against
fact where a goal gives one, and the benchmark with its context. A PNG chart per
main KPI shows the days of the period, the previous period faint and the target
dashed. Channels are ranked by return with a decision hint, and funnels show
their weakest step. Rendered from ``templates/report.html.j2`` (HTML, charts
inline) and ``report.txt.j2`` (the Slack and Telegram summary).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from monitor.charts import kpi_chart
from monitor.errors import KpimonError
from monitor.funnels import evaluate_funnel
from monitor.goals import GoalSpec
from monitor.kpis import Unit
from monitor.periods import Unit as PeriodUnit
from monitor.periods import period_start
from monitor.ranking import rank_segments
from monitor.runtime import Runtime
from monitor.sources.base import TS
from monitor.templating import Formatter

PERIODS = ("last-week", "last-month")
MAIN_KPIS = ("revenue", "conversions", "cost", "roas", "cpa", "cr", "ctr", "cpc", "leads",
             "open_rate", "click_rate", "unsubscribe_rate")
CHARTS = 6


class ReportError(KpimonError):
    exit_code = 2


@dataclass
class Report:
    title: str
    period: str
    start: date
    end: date  # exclusive
    previous_start: date
    owner: str | None
    locale: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    charts: dict[str, bytes] = field(default_factory=dict)  # kpi -> PNG
    ranking: list[dict[str, Any]] = field(default_factory=list)
    funnels: list[dict[str, Any]] = field(default_factory=list)
    generated_at: str = ""


def bounds(period: str, today: date) -> tuple[date, date, date]:
    """(start, end exclusive, previous start) of the last complete week or month."""
    if period == "last-week":
        end = today - timedelta(days=today.weekday())
        return end - timedelta(days=7), end, end - timedelta(days=14)
    if period == "last-month":
        end = today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
        return start, end, (start - timedelta(days=1)).replace(day=1)
    raise ReportError(f"unknown period {period!r}: use {' or '.join(PERIODS)}")


def build_report(rt: Runtime, frame: pl.DataFrame, period: str, now: datetime,
                 owner: str | None = None, locale: str | None = None) -> Report:
    tz = rt.tz
    locale = locale or rt.config.global_.locale
    start, end, prev = bounds(period, now.astimezone(tz).date())
    goals = [g for g in rt.config.goals if owner is None or g.owner == owner]
    if owner is not None and not goals and not any(
            f.owner == owner for f in rt.config.funnels):
        owners = sorted({g.owner for g in rt.config.goals if g.owner})
        raise ReportError(f"no goals or funnels for owner {owner!r}"
                          + (f" (owners: {', '.join(owners)})" if owners else ""))
    ru = locale.startswith("ru")
    fmt = Formatter(locale, rt.config.global_.currency)
    kpis = _main_kpis(rt, frame, goals)
    at = {name: period_start(d.toordinal(), tz, PeriodUnit.DAY) for name, d in
          (("start", start), ("end", end), ("prev", prev))}
    daily = _daily(rt, frame, kpis, at["prev"], at["end"], tz)
    period_days = [start + timedelta(days=i) for i in range((end - start).days)]
    report = Report(
        title=("Еженедельный отчёт" if period == "last-week" else "Ежемесячный отчёт") if ru
        else ("Weekly report" if period == "last-week" else "Monthly report"),
        period=period, start=start, end=end, previous_start=prev, owner=owner, locale=locale,
        generated_at=now.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"))
    # The goals first, each over its own segment, then the account's main KPIs.
    lines = [(g.kpi, g.where, g) for g in goals if _computable(rt, frame, g.kpi)]
    lines += [(k, {}, None) for k in kpis if not any(g.kpi == k and not g.where for g in goals)]
    for kpi, where, goal in lines:
        unit = _unit(rt, kpi)
        value = _totals(rt, frame, [kpi], at["start"], at["end"], where).get(kpi)
        previous = _totals(rt, frame, [kpi], at["prev"], at["start"], where).get(kpi)
        target = _target([goal], kpi, period, rt) if goal is not None else None
        bench = rt.config.benchmarks.get(kpi)
        segment = ", ".join(where.values())
        report.rows.append({
            "kpi": kpi, "title": _title(rt, kpi, ru) + (f" · {segment}" if segment else ""),
            "value": fmt.kpi(value, unit), "previous": fmt.kpi(previous, unit),
            "change": _change(fmt, value, previous, unit),
            "target": fmt.kpi(target, unit) if target is not None else "",
            "plan_fact": fmt.plan_fact(value, target, unit) if target is not None else "",
            "benchmark": (fmt.kpi(bench.value, unit) + (f" ({bench.context})"
                                                          if bench.context else ""))
            if bench is not None and bench.value is not None else "",
            "goal": goal is not None,
        })
    for kpi in kpis[:CHARTS]:
        unit = _unit(rt, kpi)
        series = daily.get(kpi, {})
        values = [series.get(d) for d in period_days]
        length = (start - prev).days
        previous = [series.get(prev + timedelta(days=i)) for i in range(length)]
        target = _target([g for g in goals if not g.where], kpi, period, rt,
                         per_day=len(period_days))
        report.charts[kpi] = kpi_chart(
            _title(rt, kpi, ru), period_days, values, previous, target,
            lambda v, unit=unit: fmt.kpi(v, unit),
            ("этот период", "прошлый период", "цель") if ru
            else ("this period", "previous period", "target"))
    by = ["channel"] if "channel" in frame.columns else []
    if by:
        ranked = rank_segments(frame, by, at["start"], at["end"])
        for row in ranked.iter_rows(named=True):
            report.ranking.append({
                "segment": row["channel"], "roas": fmt.number(row["roas"], 2),
                "cpa": fmt.money(row["cpa"]), "cost": fmt.money(row["cost"]),
                "share": fmt.percent(row["cost_share"], 0),
                "hint": row["hint_ru"] if ru else row["hint"], "decision": row["decision"]})
    for spec in rt.config.funnels:
        if owner is not None and spec.owner != owner:
            continue
        out = evaluate_funnel(spec, frame, datetime.combine(end, datetime.min.time(), tz), tz)
        if out.height == 0:
            continue
        for row in out.filter(pl.col("active")).sort("worst").head(5).iter_rows(named=True):
            report.funnels.append({
                "funnel": spec.name, "segment": " / ".join(str(row[b]) for b in spec.by),
                "step": row["step_name"].replace(">", " → "),
                "change": fmt.change(row["worst"]),
                "diagnosis": row["diagnosis_ru"] if ru else row["diagnosis"]})
    return report


def render(rt: Runtime, report: Report, images: str = "data") -> dict[str, Any]:
    """Subject, text and HTML of a report. ``images``: ``data`` inlines the charts
    (a file that opens anywhere), ``cid`` refers to email attachments."""
    sources = {kpi: (f"data:image/png;base64,{base64.b64encode(png).decode()}"
                     if images == "data" else f"cid:chart-{kpi}")
               for kpi, png in report.charts.items()}
    context = {"report": report, "images": sources, "lang": report.locale[:2],
               "timedelta1": timedelta(days=1)}
    html = rt.templates.render("report.html.j2", context, report.locale)
    text = rt.templates.render("report.txt.j2", context, report.locale)
    subject = (f"{report.title}: {report.start:%d.%m.%Y} – "
               f"{report.end - timedelta(days=1):%d.%m.%Y}")
    return {"subject": subject, "text": text, "html": html,
            "images": {f"chart-{k}": base64.b64encode(v).decode()
                       for k, v in report.charts.items()}}


def _computable(rt: Runtime, frame: pl.DataFrame, name: str) -> bool:
    needed = rt.catalog.expand(rt.catalog[name].tree) if name in rt.catalog else {name}
    return needed <= set(frame.columns)


def _main_kpis(rt: Runtime, frame: pl.DataFrame, goals: list[GoalSpec]) -> list[str]:
    ordered = [g.kpi for g in goals] + [k for g in goals for k in g.supporting] + list(MAIN_KPIS)
    return [k for k in dict.fromkeys(ordered) if _computable(rt, frame, k)]


def _measures(rt: Runtime, kpi: str) -> list[str]:
    return sorted(rt.catalog.expand(rt.catalog[kpi].tree) if kpi in rt.catalog else {kpi})


def _kpi_frame(rt: Runtime, rows: pl.LazyFrame, kpi: str, keys: list[pl.Expr]) -> pl.LazyFrame:
    """A KPI over the rows that report every one of its measures: the click rate of
    emails is not diluted by ad rows, which have clicks but nothing delivered."""
    measures = _measures(rt, kpi)
    value = (rt.catalog.column(kpi) if kpi in rt.catalog else pl.col(kpi)).cast(pl.Float64)
    return (rows.filter(pl.all_horizontal(pl.col(m).is_not_null() for m in measures))
            .group_by(keys).agg(pl.col(m).sum() for m in measures)
            .select(*(k.meta.output_name() for k in keys), value.alias("value"))
            .with_columns(pl.lit(kpi).alias("kpi")))


def _totals(rt: Runtime, frame: pl.DataFrame, kpis: list[str], start: datetime,
            end: datetime, where: dict[str, str] | None = None) -> dict[str, float | None]:
    rows = frame.lazy().filter((pl.col(TS) >= start) & (pl.col(TS) < end)).with_columns(
        pl.lit(0).alias("_all"))
    for label, value in (where or {}).items():
        if label not in frame.columns:
            return {}
        rows = rows.filter(pl.col(label) == value)
    parts = [_kpi_frame(rt, rows, k, [pl.col("_all")]) for k in kpis]
    if not parts:
        return {}
    out = pl.concat(pl.collect_all(parts))
    return {k: _finite(v) for k, v in zip(out["kpi"], out["value"], strict=True)}


def _daily(rt: Runtime, frame: pl.DataFrame, kpis: list[str], start: datetime, end: datetime,
           tz: ZoneInfo) -> dict[str, dict[date, float | None]]:
    rows = frame.lazy().filter((pl.col(TS) >= start) & (pl.col(TS) < end))
    day = pl.col(TS).dt.convert_time_zone(tz.key).dt.date().alias("day")
    parts = [_kpi_frame(rt, rows, k, [day]) for k in kpis]
    out: dict[str, dict[date, float | None]] = {k: {} for k in kpis}
    for part in pl.collect_all(parts) if parts else []:
        for d, v, k in part.select("day", "value", "kpi").iter_rows():
            out[k][d] = _finite(v)
    return out


def _finite(v: Any) -> float | None:
    return None if v is None or v != v or v in (float("inf"), float("-inf")) else float(v)


def _unit(rt: Runtime, kpi: str) -> Unit:
    return rt.catalog.unit_of(kpi)


def _title(rt: Runtime, kpi: str, ru: bool) -> str:
    return rt.catalog.title_of(kpi, ru)


def _change(fmt: Formatter, value: float | None, previous: float | None, unit: Unit) -> str:
    """Against the previous period: points for ratios, percent for everything else."""
    if value is None or previous is None:
        return "—"
    if unit is Unit.RATIO:
        return fmt.points(value - previous)
    return fmt.change(value / previous - 1) if previous else "—"


def _target(goals: list[GoalSpec], kpi: str, period: str, rt: Runtime,
            per_day: int | None = None) -> float | None:
    """A goal's target comparable with the report: a ratio's level, or an additive
    goal over the same kind of period (per day on a chart)."""
    for goal in goals:
        if goal.kpi != kpi:
            continue
        if kpi in rt.catalog:
            return goal.target
        same = (goal.period, period) in (("week", "last-week"), ("month", "last-month"))
        if same:
            return goal.target / per_day if per_day else goal.target
    return None


def run_report(config_path: str, period: str, out: str, at: datetime,
               owner: str | None = None, locale: str | None = None,
               poll: bool = True) -> str:
    """``kpimon report``: render a report to a file; returns the file's path."""
    from pathlib import Path

    from monitor.config import load_config
    from monitor.history import load_history
    from monitor.runtime import build

    rt = build(load_config(config_path), clock=lambda: at)
    _, _, prev = bounds(period, at.astimezone(rt.tz).date())
    since = period_start(prev.toordinal(), rt.tz, PeriodUnit.DAY) - max(
        timedelta(days=31), max((f.window + f.baseline for f in rt.config.funnels),
                                default=timedelta(0)))
    frame = load_history(rt, since, at, poll)
    if frame.height == 0:
        raise ReportError("no data for the report: the store is empty and no source answered")
    rendered = render(rt, build_report(rt, frame, period, at, owner, locale))
    path = Path(out)
    try:
        path.write_text(rendered["html"], encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror}") from None
    return str(path)


def queue_report(rt: Runtime, store, frame: pl.DataFrame, spec, now: datetime) -> int:
    """Build a scheduled report and queue it in the outbox, one message per receiver."""
    import logging

    from monitor.dispatch import Message

    log = logging.getLogger("kpimon.report")
    try:
        report = build_report(rt, frame, spec.period, now, spec.owner, spec.locale)
    except KpimonError as exc:
        log.error("report %s not built: %s", spec.name, exc)
        return 0
    rendered = render(rt, report, images="cid")
    messages = [Message(r, {"report": rendered}, "", now) for r in spec.receivers]
    with store.transaction() as conn:
        store.enqueue(messages, now, conn)
    log.info("report %s queued for %s", spec.name, ", ".join(spec.receivers))
    return len(messages)
