"""Compiling a rule's expressions into polars, with the windowed functions.

A rule expression reads columns of one frame per rule: the measures summed over
the rule's window (``cost``), over shifted or earlier windows (``cost@s7`` for
``prev(…, 7d)``, ``cost@h28`` for the 28 days before the window), and baseline
statistics per series (``$b0:median``). The compiler turns the syntax tree into
one polars expression over those columns and records what the engine must
compute: the spans (each a range relative to the window) and bucket statistics.

Window functions, registered in ``FUNCTIONS`` (plus ``benchmark(kpi)``, the
configured benchmark of a KPI):

  prev(x, 7d)               x over the window shifted back by 7d
  pct_change(x, 7d)         x / prev(x, 7d) - 1
  baseline(x, 28d[, m])     per-window values of x in the 28d before the window,
                            reduced by m: median (default), mean, same_weekday
  zscore(x, 28d)            robust z: 0.6745 (x - median) / MAD over those values
  ewma(x, 28d[, alpha])     exponentially weighted mean of those values (alpha 0.3)
  wilson_low(r[, z])        Wilson score bounds of a rate KPI (z = 1.96)
  wilson_high(r[, z])
  significant(r, 28d[, a])  two-proportion z-test of a rate KPI against the
                            pooled 28d before the window, two-sided level a (0.05)
  share(x)                  x as a share of its total over all series of the rule
  abs(x), min(a, b…), max(a, b…)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import polars as pl

from monitor import expr as ex
from monitor.kpis import Catalog
from monitor.kpis import Unit as KpiUnit
from monitor.periods import Unit, WindowSpec

MAD_TO_Z = 0.6745  # makes the MAD of a normal sample comparable to its standard deviation


@dataclass(frozen=True)
class Span:
    """A range of periods relative to the rule's window [start, end)."""

    kind: str  # "window", "shift" (the window moved back) or "history" (just before it)
    units: int = 0

    @property
    def suffix(self) -> str:
        return {"window": "", "shift": f"@s{self.units}", "history": f"@h{self.units}"}[
            self.kind]

    def resolve(self, start: int, end: int) -> tuple[int, int]:
        if self.kind == "shift":
            return start - self.units, end - self.units
        if self.kind == "history":
            return start - self.units, start
        return start, end


WINDOW = Span("window")


@dataclass(frozen=True)
class BucketStat:
    """Statistics of x over equal buckets of the history before the window."""

    index: int
    history: int  # units before the window
    stats: tuple[str, ...]  # median, mean, mad, same_weekday, ewma
    x: pl.Expr = field(compare=False)  # x over the bucket's plain measure sums
    measures: frozenset[str] = frozenset()
    alpha: float = 0.3
    node: ex.Node | None = field(default=None, compare=False)

    def column(self, stat: str) -> str:
        return f"$b{self.index}:{stat}"


@dataclass
class Compiled:
    expr: pl.Expr
    spans: dict[Span, set[str]]
    buckets: list[BucketStat]


class RuleCompiler:
    """Compiles the expressions of one rule; records the spans and buckets they read."""

    def __init__(self, catalog: Catalog, window: WindowSpec, targets: dict[str, pl.Expr],
                 measures: set[str], benchmarks: dict[str, pl.Expr] | None = None):
        self.catalog, self.window, self.targets, self.known_measures = (
            catalog, window, targets, measures)
        self.benchmarks = benchmarks or {}
        self.spans: dict[Span, set[str]] = {WINDOW: set()}
        self.buckets: list[BucketStat] = []

    def compile(self, node: ex.Node, span: Span = WINDOW) -> pl.Expr:
        return ex.compile_expr(node, lambda n: self.name(n, span), self.call_in(span))

    def name(self, node: ex.Name, span: Span) -> pl.Expr:
        if node.name in self.targets:
            return self.targets[node.name]
        if node.name in self.catalog:
            return self.compile(self.catalog[node.name].tree, span)
        self.spans.setdefault(span, set()).add(node.name)
        return pl.col(node.name + span.suffix)

    def call_in(self, span: Span) -> Callable[[ex.Call], pl.Expr]:
        def call(node: ex.Call) -> pl.Expr:
            handler = FUNCTIONS.get(node.func)
            if handler is None:
                return ex.plain_call(node, lambda n: self.compile(n, span))
            if span != WINDOW:
                raise ex.ExprError(f"{node.func}() cannot be nested inside another window "
                                   "function", node.pos)
            return handler(self, node)
        return call

    # --- helpers for the handlers ---------------------------------------------

    def units(self, node: ex.Node, func: str) -> int:
        if not isinstance(node, ex.Dur):
            raise ex.ExprError(f"{func}() expects a duration such as 7d here", _pos(node))
        try:
            units = self.window.units(node.text)
        except ValueError as err:
            raise ex.ExprError(f"{func}(): {err}", node.pos) from None
        if units <= 0:
            raise ex.ExprError(f"{func}(): the duration must be positive", node.pos)
        return units

    def bucket(self, x: ex.Node, history: int, stats: tuple[str, ...], alpha: float = 0.3,
               ) -> BucketStat:
        key = (_canonical(x), history, stats, alpha)
        for existing in self.buckets:  # the value re-compiles the same call: share it
            if (_canonical(existing.node), existing.history, existing.stats,
                    existing.alpha) == key:
                return existing
        plain = RuleCompiler(self.catalog, self.window, self.targets, self.known_measures,
                             self.benchmarks)
        x_expr = plain.compile(x)
        if len(plain.spans) > 1 or plain.buckets:
            raise ex.ExprError("a baseline's expression cannot use window functions", _pos(x))
        stat = BucketStat(len(self.buckets), history, stats, x_expr,
                          frozenset(plain.spans[WINDOW]), alpha, x)
        self.buckets.append(stat)
        return stat

    def rate_parts(self, node: ex.Node, func: str) -> tuple[str, str]:
        """The (successes, trials) measures of a rate KPI such as ctr = clicks / impressions."""
        is_kpi = isinstance(node, ex.Name) and node.name in self.catalog
        tree = self.catalog[node.name].tree if is_kpi else node
        if is_kpi and self.catalog[node.name].unit is not KpiUnit.RATIO:
            tree = None  # cpa = cost / conversions is a ratio of sums, not a rate
        if (isinstance(tree, ex.BinOp) and tree.op == "/" and isinstance(tree.left, ex.Name)
                and isinstance(tree.right, ex.Name)):
            return tree.left.name, tree.right.name
        raise ex.ExprError(f"{func}() needs a rate: a KPI defined as one measure divided by "
                           "another (ctr, cr, open_rate…)", _pos(node))


def _canonical(node: ex.Node | None) -> str:
    """A node's text without positions, so equal sub-expressions compare equal."""
    if isinstance(node, ex.Num):
        return repr(node.value)
    if isinstance(node, ex.Dur):
        return node.text
    if isinstance(node, ex.Name):
        return node.name
    if isinstance(node, ex.BinOp):
        return f"({_canonical(node.left)} {node.op} {_canonical(node.right)})"
    if isinstance(node, ex.Not | ex.Neg):
        return f"{type(node).__name__}({_canonical(node.operand)})"
    if isinstance(node, ex.Call):
        return f"{node.func}({', '.join(_canonical(a) for a in node.args)})"
    return ""


def _pos(node: ex.Node) -> int:
    return getattr(node, "pos", 0)


def _args(node: ex.Call, low: int, high: int) -> tuple[ex.Node, ...]:
    if not low <= len(node.args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise ex.ExprError(f"{node.func}() takes {want} arguments, got {len(node.args)}",
                           node.pos)
    return node.args


def _number(node: ex.Node, func: str, low: float, high: float) -> float:
    if not isinstance(node, ex.Num) or not low < node.value < high:
        raise ex.ExprError(f"{func}(): expected a number between {low} and {high}", _pos(node))
    return node.value


# --- the window functions --------------------------------------------------------------


def _prev(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    x, d = _args(node, 2, 2)
    span = Span("shift", c.units(d, node.func))
    return c.compile(x, span)


def _pct_change(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    x, d = _args(node, 2, 2)
    previous = c.compile(x, Span("shift", c.units(d, node.func)))
    return ex.safe_div(c.compile(x) - previous, previous)


BASELINE_METHODS = ("median", "mean", "same_weekday")


def _baseline(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    x, d, *rest = _args(node, 2, 3)
    method = "median"
    if rest:
        if not isinstance(rest[0], ex.Name) or rest[0].name not in BASELINE_METHODS:
            raise ex.ExprError(f"baseline() method must be one of {', '.join(BASELINE_METHODS)}"
                               f"{ex.suggest(getattr(rest[0], 'name', ''), BASELINE_METHODS)}",
                               _pos(rest[0]))
        method = rest[0].name
    if method == "same_weekday" and c.window.unit is not Unit.DAY:
        raise ex.ExprError("same_weekday needs a window of whole days", _pos(rest[0]))
    stat = c.bucket(x, c.units(d, node.func), (method,))
    return pl.col(stat.column(method))


def _zscore(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    x, d = _args(node, 2, 2)
    stat = c.bucket(x, c.units(d, node.func), ("median", "mad"))
    return MAD_TO_Z * ex.safe_div(c.compile(x) - pl.col(stat.column("median")),
                                  pl.col(stat.column("mad")))


def _ewma(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    x, d, *rest = _args(node, 2, 3)
    alpha = _number(rest[0], "ewma", 0, 1) if rest else 0.3
    stat = c.bucket(x, c.units(d, node.func), ("ewma",), alpha)
    return pl.col(stat.column("ewma"))


def _wilson(sign: int) -> Callable[[RuleCompiler, ex.Call], pl.Expr]:
    def handler(c: RuleCompiler, node: ex.Call) -> pl.Expr:
        x, *rest = _args(node, 1, 2)
        z = _number(rest[0], node.func, 0, 10) if rest else 1.96
        num, den = c.rate_parts(x, node.func)
        k, n = c.name(ex.Name(num, 0), WINDOW), c.name(ex.Name(den, 0), WINDOW)
        p = ex.safe_div(k, n)
        centre = p + z * z / (2 * n)
        margin = z * (p * (1 - p) / n + z * z / (4 * n * n)).sqrt()
        return ex.safe_div(centre + sign * margin, 1 + z * z / n)
    return handler


def _significant(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    x, d, *rest = _args(node, 2, 3)
    alpha = _number(rest[0], "significant", 0, 0.5) if rest else 0.05
    num, den = c.rate_parts(x, node.func)
    history = Span("history", c.units(d, node.func))
    k1, n1 = c.name(ex.Name(num, 0), WINDOW), c.name(ex.Name(den, 0), WINDOW)
    k2, n2 = c.name(ex.Name(num, 0), history), c.name(ex.Name(den, 0), history)
    pooled = ex.safe_div(k1 + k2, n1 + n2)
    se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)).sqrt()
    z = ex.safe_div(ex.safe_div(k1, n1) - ex.safe_div(k2, n2), se)
    critical = NormalDist().inv_cdf(1 - alpha / 2)
    return z.abs() >= critical


def _share(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    (x,) = _args(node, 1, 1)
    value = c.compile(x)
    return ex.safe_div(value, value.sum())


def _benchmark(c: RuleCompiler, node: ex.Call) -> pl.Expr:
    """``benchmark(cr)``: the configured benchmark of a KPI (per label when it has one)."""
    (x,) = _args(node, 1, 1)
    if not isinstance(x, ex.Name) or x.name not in c.catalog:
        raise ex.ExprError("benchmark() takes a KPI name, e.g. benchmark(cr)", _pos(x))
    if x.name not in c.benchmarks:
        raise ex.ExprError(f"no benchmark for {x.name!r}: add it under benchmarks: in the "
                           "config", _pos(x))
    return c.benchmarks[x.name]


FUNCTIONS: dict[str, Callable[[RuleCompiler, ex.Call], pl.Expr]] = {
    "benchmark": _benchmark,
    "prev": _prev,
    "pct_change": _pct_change,
    "baseline": _baseline,
    "zscore": _zscore,
    "ewma": _ewma,
    "wilson_low": _wilson(-1),
    "wilson_high": _wilson(+1),
    "significant": _significant,
    "share": _share,
}

ALL_FUNCTIONS = set(FUNCTIONS) | set(ex.FUNCTIONS)
