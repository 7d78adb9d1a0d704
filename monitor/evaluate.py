"""The rule engine: every rule over every series, vectorized with polars.

Evaluation is planned, then executed:

1. Each rule's window, shifted windows and history resolve to ranges of period
   indexes (days in the global timezone, or hours) at ``now``.
2. Per period unit, ONE pass over the window frame groups the rows by every
   label any rule groups by, and sums each needed measure over each needed
   range (a filtered sum per range). Rules then regroup that small frame by
   their own ``by`` labels: sums are additive, so the regrouping is exact, and
   KPIs are formulas over the sums (ratio of sums at every level).
3. Baseline functions read per-bucket sums of the history before the window.
4. Each rule is one polars expression over its frame: value, condition,
   volume guard and resolve condition for all its series at once.

``now`` is a parameter: the daemon, ``eval``, ``test`` and ``backtest`` run this
same code. Results are cached per frame, so several groups evaluating the same
window, or a backtest stepping through one history, share the heavy passes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import polars as pl

from monitor.compiler import WINDOW, BucketStat
from monitor.kpis import Catalog
from monitor.periods import Unit, period_expr
from monitor.rulefile import Rule
from monitor.sources.base import TS, label_key

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = {
    "rule": pl.String, "series": pl.String, "value": pl.Float64, "active": pl.Boolean,
    "sufficient": pl.Boolean, "clear": pl.Boolean, "kpi_values": pl.String,
}
# One row per exported number of a rule series. `family` is "kpi" (a KPI named in the
# rule), "measure" (a raw sum over the window: both parts of every ratio) or
# "threshold" (the right side of the first comparison); `labels` is the series'
# labels as Prometheus exposition text: channel="a",campaign="b".
KPI_SCHEMA = {"rule": pl.String, "window": pl.String, "family": pl.String, "kpi": pl.String,
              "series": pl.String, "labels": pl.String, "value": pl.Float64}
PERIOD = "$period"
SEGMENT = "$segment"
# What a rule can fail with at run time: bad data types, not bugs in kpimon.
FAILURES = (pl.exceptions.PolarsError, ValueError, TypeError, ArithmeticError)


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating some rules at one instant."""

    at: datetime
    candidates: pl.DataFrame  # one row per (rule, series): value, active, sufficient, clear
    kpis: pl.DataFrame  # one row per (rule, kpi, series): the KPI values, for export
    errors: dict[str, str] = field(default_factory=dict)  # rule id -> why it failed


def nsum(expr: pl.Expr) -> pl.Expr:
    """A sum that stays null when every value is missing (a measure no row has)."""
    return pl.when(expr.count() > 0).then(expr.sum())


@dataclass
class _Plan:
    """What one evaluation must compute, per period unit."""

    ranges: dict[Unit, dict[tuple[int, int], set[str]]] = field(default_factory=dict)
    labels: dict[Unit, set[str]] = field(default_factory=dict)
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule id -> range

    def add(self, rule: Rule, now: datetime, tz: ZoneInfo) -> None:
        unit = rule.window.unit
        start, end = rule.window.resolve(now, tz)
        self.windows[rule.id] = (start, end)
        ranges = self.ranges.setdefault(unit, {})
        for span, measures in rule.spans.items():
            extra = set(rule.spec.min_volume) if span == WINDOW else set()
            ranges.setdefault(span.resolve(start, end), set()).update(measures | extra)
        self.labels.setdefault(unit, set()).update(rule.by)


def _col(measure: str, rng: tuple[int, int]) -> str:
    return f"{measure}|{rng[0]}|{rng[1]}"


class Executor:
    """Runs a plan over one frame; caches what does not depend on ``now``."""

    def __init__(self, frame: pl.DataFrame, tz: ZoneInfo, cache: dict | None = None):
        self.frame, self.tz = frame, tz
        self.cache = cache if cache is not None else {}

    def stamps(self, unit: Unit) -> pl.DataFrame:
        """Each distinct timestamp with its period index (few: one per poll period)."""
        key = ("stamps", unit, str(self.tz))
        if key not in self.cache:
            self.cache[key] = self.frame.select(pl.col(TS).unique()).with_columns(
                period_expr(self.tz, unit).alias(PERIOD))
        return self.cache[key]

    def period_of_rows(self, unit: Unit) -> pl.Expr:
        """The period index of every row, by lookup rather than time-zone arithmetic."""
        stamps = self.stamps(unit)
        return pl.col(TS).replace_strict(stamps[TS], stamps[PERIOD],
                                         return_dtype=pl.Int64).alias(PERIOD)

    def root(self, unit: Unit, labels: list[str], ranges: dict[tuple[int, int], set[str]],
             ) -> pl.DataFrame:
        """Sums of every needed measure over every needed range, by all rule labels.

        The ranges' boundaries cut the periods into segments; one group-by sums
        each measure per (labels, segment), and each range is then a sum of whole
        segments over that much smaller frame.
        """
        rows = self.period_rows(unit, labels)
        bounds = sorted({i for rng in ranges for i in rng})
        edges = pl.Series("edges", bounds, dtype=pl.Int64)
        measures = sorted(set().union(*ranges.values()))
        present = [m for m in measures if m in rows.columns]
        segment = edges.search_sorted(rows[PERIOD], side="right").alias(SEGMENT)
        # Segment k (1-based) is [bounds[k-1], bounds[k]); 0 and len(bounds) lie outside.
        per_segment = (rows.lazy().select(*labels, *present).with_columns(segment)
                       .filter(pl.col(SEGMENT).is_between(1, len(bounds) - 1))
                       .group_by([*labels, SEGMENT])
                       .agg(nsum(pl.col(m)).alias(m) for m in present))
        position = {b: i + 1 for i, b in enumerate(bounds)}
        aggs = []
        for rng, needed in sorted(ranges.items()):
            inside = pl.col(SEGMENT).is_between(position[rng[0]], position[rng[1]],
                                                closed="left")
            for m in sorted(needed):
                aggs.append((nsum(pl.col(m).filter(inside)) if m in present
                             else pl.lit(None, pl.Float64)).alias(_col(m, rng)))
        out = per_segment.group_by(labels).agg(aggs) if labels else per_segment.select(aggs)
        return out.collect()

    def one_row_per_period(self, unit: Unit, labels: list[str]) -> bool:
        """True when no two rows share (labels, period): the per-period sums are the rows.

        The store keys rows by (source, ts, all labels); so with one source, labels
        covering every label column, and one timestamp per period, rows are unique.
        """
        key = ("unique", unit, tuple(labels))
        if key not in self.cache:
            stamps = self.stamps(unit)
            all_labels = {c for c, t in self.frame.schema.items()
                          if t == pl.String and c not in ("source", "labels")}
            self.cache[key] = (
                set(labels) >= all_labels
                and ("source" not in self.frame.columns or self.frame["source"].n_unique() <= 1)
                and stamps.height == stamps[PERIOD].n_unique())
        return self.cache[key]

    def period_rows(self, unit: Unit, labels: list[str]) -> pl.DataFrame:
        """Every measure summed per (labels, period): hourly rows become one row a day
        for day windows. Independent of ``now``, so computed once per frame."""
        key = ("period_rows", unit, tuple(labels))
        if key not in self.cache:
            measures = [c for c, t in self.frame.schema.items() if t.is_numeric()]
            rows = self.frame.lazy().select(*labels, self.period_of_rows(unit), *measures)
            if not self.one_row_per_period(unit, labels):
                rows = rows.group_by([*labels, PERIOD]).agg(nsum(pl.col(m)).alias(m)
                                                            for m in measures)
            self.cache[key] = rows.collect()
        return self.cache[key]


def evaluate(rules: Sequence[Rule], frame: pl.DataFrame, now: datetime, tz: ZoneInfo,
             catalog: Catalog, cache: dict | None = None) -> Evaluation:
    plan = _Plan()
    for rule in rules:
        plan.add(rule, now, tz)
    # On one frame, the result depends only on the rules and their resolved ranges:
    # evaluations between two polls (or backtest steps inside one day) reuse it.
    key = ("evaluation", tuple(id(r) for r in rules), tuple(sorted(plan.windows.items())))
    if cache is not None and key in cache:
        hit: Evaluation = cache[key]
        return Evaluation(now, hit.candidates, hit.kpis, dict(hit.errors))
    result = _evaluate(rules, frame, now, tz, catalog, plan, cache)
    if cache is not None:
        cache[key] = result
    return result


def _evaluate(rules: Sequence[Rule], frame: pl.DataFrame, now: datetime, tz: ZoneInfo,
              catalog: Catalog, plan: _Plan, cache: dict | None) -> Evaluation:
    ex = Executor(frame, tz, cache)
    present = set(frame.columns)
    roots: dict[Unit, tuple[list[str], pl.DataFrame] | Exception] = {}
    for unit, ranges in plan.ranges.items():
        labels = sorted(plan.labels[unit] & present)
        try:
            roots[unit] = (labels, ex.root(unit, labels, ranges))
        except FAILURES as exc:  # e.g. a measure column of the wrong type
            roots[unit] = exc
    derived: dict[tuple, pl.LazyFrame] = {}
    plans: list[tuple[Rule, pl.LazyFrame]] = []
    errors: dict[str, str] = {}
    for rule in rules:
        try:
            root_or_error = roots[rule.window.unit]
            if isinstance(root_or_error, Exception):
                raise root_or_error
            labels, root = root_or_error
            if not set(rule.by) <= present:
                continue  # no source has these labels yet: no series
            base = _regroup(root, labels, rule.by, derived, rule.window.unit)
            frame_r = _rule_frame(rule, base, plan.windows[rule.id], ex, labels)
            plans.append((rule, _apply(rule, frame_r, catalog)))
        except FAILURES as exc:
            errors[rule.id] = _failed(rule, exc)
    candidates, kpis = _collect(plans, errors)
    return Evaluation(
        at=now,
        candidates=pl.concat(candidates) if candidates else pl.DataFrame(
            schema=CANDIDATE_SCHEMA),
        kpis=pl.concat(kpis) if kpis else pl.DataFrame(schema=KPI_SCHEMA),
        errors=errors,
    )


def _failed(rule: Rule, exc: Exception) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    log.error("rule %s failed: %s: %s", rule.id, type(exc).__name__, message)
    return f"{type(exc).__name__}: {message}"


def _collect(plans: list[tuple[Rule, pl.LazyFrame]], errors: dict[str, str],
             ) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Run every rule's plan in one parallel collect; isolate a failing rule if one fails."""
    try:
        outs = list(zip([r for r, _ in plans], pl.collect_all([lf for _, lf in plans]),
                        strict=True))
    except FAILURES:
        outs = []
        for rule, lf in plans:  # find which rules fail; the others still count
            try:
                outs.append((rule, lf.collect()))
            except FAILURES as exc:
                errors[rule.id] = _failed(rule, exc)
    candidates = [_candidates(rule, out) for rule, out in outs]
    kpis = [_kpi_rows(rule, out) for rule, out in outs]
    return candidates, kpis


def _regroup(root: pl.DataFrame, labels: list[str], by: tuple[str, ...],
             cache: dict[tuple, pl.LazyFrame], unit: Unit) -> pl.LazyFrame:
    """The root regrouped by a rule's labels; rows missing one of them are left out."""
    key = (unit, by)
    if key not in cache:
        sums = [c for c in root.columns if c not in labels]
        if list(by) == labels:
            grouped = root.lazy()
        elif by:
            grouped = root.lazy().group_by(list(by)).agg(nsum(pl.col(c)).alias(c)
                                                         for c in sums)
        else:
            grouped = root.lazy().select(nsum(pl.col(c)).alias(c) for c in sums)
        cache[key] = grouped.drop_nulls(list(by)) if by else grouped
    return cache[key]


def _rule_frame(rule: Rule, base: pl.LazyFrame, window: tuple[int, int], ex: Executor,
                labels: list[str]) -> pl.LazyFrame:
    """The rule's own columns: measures per span, plus baseline statistics."""
    start, end = window
    renames = [pl.col(_col(m, span.resolve(start, end))).alias(m + span.suffix)
               for span, measures in rule.spans.items()
               for m in sorted(measures | (set(rule.spec.min_volume) if span == WINDOW
                                           else set()))]
    out = base.select(*rule.by, *renames)
    for stat in rule.buckets:
        rows = ex.period_rows(rule.window.unit, labels)
        stats = _bucket_stats(stat, rule, rows, labels, start, end)
        out = (out.join(stats, on=list(rule.by), how="left") if rule.by
               else out.join(stats, how="cross"))
    return out


def _bucket_stats(stat: BucketStat, rule: Rule, rows: pl.DataFrame, labels: list[str],
                  start: int, end: int) -> pl.LazyFrame:
    """x per window-sized bucket of the history before the window, reduced per series."""
    size = max(end - start, 1)
    count = stat.history // size
    by = list(rule.by)
    bucket = ((start - 1 - pl.col(PERIOD)) // size).alias("$bucket")
    present = [m for m in sorted(stat.measures) if m in rows.columns]
    per_bucket = (rows.lazy().select(*by, PERIOD, *present)
                  .with_columns(pl.lit(None, pl.Float64).alias(m) for m in sorted(stat.measures)
                                if m not in present)
                  .filter(pl.col(PERIOD).is_between(start - count * size, start, closed="left"))
                  .drop_nulls(by).with_columns(bucket))
    if not (size == 1 and by == labels):  # else the rows already are one per bucket
        per_bucket = per_bucket.group_by([*by, "$bucket"]).agg(
            nsum(pl.col(m)).alias(m) for m in sorted(stat.measures))
    per_bucket = per_bucket.with_columns(stat.x.alias("$x"))
    if "same_weekday" in stat.stats:
        # Buckets whose distance back is a whole number of weeks share the weekday.
        per_bucket = per_bucket.filter(((pl.col("$bucket") + 1) * size) % 7 == 0)
    x = pl.col("$x").drop_nulls()
    reducers = {
        "median": x.median(), "mean": x.mean(), "same_weekday": x.median(),
        "mad": (x - x.median()).abs().median(),
        "ewma": pl.col("$x").sort_by("$bucket", descending=True).drop_nulls()
        .ewm_mean(alpha=stat.alpha, adjust=False).last(),
    }
    aggs = [reducers[s].alias(stat.column(s)) for s in stat.stats]
    # Without `by`, select() always yields one row (null when there is no history).
    return per_bucket.group_by(by).agg(aggs) if by else per_bucket.select(aggs)


def _apply(rule: Rule, frame: pl.LazyFrame, catalog: Catalog) -> pl.LazyFrame:
    """The rule's result per series: value, condition, guard, resolve, and its KPIs."""
    sufficient = pl.lit(True)
    for measure, minimum in rule.spec.min_volume.items():
        sufficient = sufficient & (pl.col(measure).fill_null(0) >= minimum)
    active = rule.condition.fill_null(False)
    clear = (rule.clear.fill_null(False) if rule.clear is not None
             else ~(active & sufficient))
    # Internal columns start with "$": a measure may well be called "value".
    return frame.select(
        label_key(list(rule.by)).alias("$series"),
        exposition_labels(list(rule.by)).alias("$labels"),
        rule.value.cast(pl.Float64).alias("$value"),
        active.alias("$active"),
        sufficient.alias("$sufficient"),
        clear.alias("$clear"),
        rule.threshold.cast(pl.Float64).alias("$threshold"),
        *(catalog.column(k).cast(pl.Float64).alias(k) for k in rule.kpis),
        *(pl.col(m).cast(pl.Float64).alias(f"$m:{m}") for m in sorted(rule.spans[WINDOW])),
    )


def escape_label(value: pl.Expr) -> pl.Expr:
    """A label value escaped for the Prometheus text format: backslash, quote, newline."""
    return (value.str.replace_all("\\", "\\\\", literal=True)
            .str.replace_all('"', '\\"', literal=True)
            .str.replace_all("\n", "\\n", literal=True))


def exposition_labels(names: list[str]) -> pl.Expr:
    """``a="x",b="y"`` for each row: the series' labels, ready for /metrics."""
    if not names:
        return pl.lit("")
    parts = [pl.lit(f'{n}="') + escape_label(pl.col(n).cast(pl.String)) + pl.lit('"')
             for n in names]
    return pl.concat_str(parts, separator=",")


def _candidates(rule: Rule, out: pl.DataFrame) -> pl.DataFrame:
    values = pl.struct(list(rule.kpis)).struct.json_encode() if rule.kpis else pl.lit("{}")
    return out.select(
        pl.lit(rule.id).alias("rule"), *(pl.col(f"${c}").alias(c) for c in
                                         ("series", "value", "active", "sufficient", "clear")),
        values.alias("kpi_values"))


def _kpi_rows(rule: Rule, out: pl.DataFrame) -> pl.DataFrame:
    """The rule series' exported numbers, one row each (see KPI_SCHEMA)."""
    measures = [f"$m:{m}" for m in sorted(rule.spans[WINDOW])]
    columns = [*rule.kpis, *measures, "$threshold"]
    long = (out.select(pl.col("$series").alias("$s"), pl.col("$labels").alias("$l"), *columns)
            .unpivot(index=["$s", "$l"], on=columns, variable_name="$k", value_name="$v"))
    family = (pl.when(pl.col("$k") == "$threshold").then(pl.lit("threshold"))
              .when(pl.col("$k").str.starts_with("$m:")).then(pl.lit("measure"))
              .otherwise(pl.lit("kpi")))
    return long.select(
        pl.lit(rule.id).alias("rule"), pl.lit(rule.window.label).alias("window"),
        family.alias("family"),
        pl.col("$k").str.strip_prefix("$m:").replace("$threshold", "").alias("kpi"),
        pl.col("$s").alias("series"), pl.col("$l").alias("labels"),
        pl.col("$v").alias("value"))
