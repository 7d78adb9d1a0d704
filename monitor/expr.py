"""The expression language of KPI formulas and rule conditions.

``cost / conversions``, ``ctr > 5% and cr < 1%``, ``cpa > 1.2 * 650``: a small
Pratt-style parser that keeps the character offset of every node, so errors
point at the exact column, and a compiler to polars expressions, so a rule runs
as one vectorized expression over all series at once.

Semantics that matter for KPIs: division by zero (or by a missing value) gives
null, never inf; a comparison with null is "not true"; ``and``/``or`` follow
three-valued logic and the final condition treats null as false.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl

from monitor.errors import KpimonError


class ExprError(KpimonError):
    """A syntax or name error at a character offset of the expression text."""

    exit_code = 2

    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message, self.pos = message, pos


# --- syntax tree ---------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: float
    pos: int


@dataclass(frozen=True)
class Dur:
    """A duration argument such as ``7d`` (only meaningful inside function calls)."""

    text: str
    pos: int


@dataclass(frozen=True)
class Name:
    name: str
    pos: int


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True)
class Not:
    operand: Node
    pos: int


@dataclass(frozen=True)
class Neg:
    operand: Node
    pos: int


Node = Num | Dur | Name | Call | BinOp | Not | Neg

COMPARISONS = (">=", "<=", "==", "!=", ">", "<")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<dur>\d+(?:ms|s|m|h|d|w))(?![A-Za-z0-9_])
      | (?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?P<pct>%)?
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>>=|<=|==|!=|[-+*/()<>,])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not"}
# Binding power of binary operators: higher binds tighter.
_BINARY = {"or": 1, "and": 2, **dict.fromkeys(COMPARISONS, 4), "+": 5, "-": 5, "*": 6, "/": 6}


@dataclass(frozen=True)
class _Tok:
    kind: str  # num | dur | name | op | kw | end
    text: str
    pos: int
    value: float = 0.0


def _tokenize(text: str) -> Iterator[_Tok]:
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            yield _Tok("end", "", pos)
            return
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected character {text[pos]!r}", pos)
        if m.group("dur") is not None:
            yield _Tok("dur", m.group("dur"), m.start("dur"))
        elif m.group("num") is not None:
            start = m.start("num")
            value = float(m.group("num")) / (100 if m.group("pct") else 1)
            yield _Tok("num", m.group(0).strip(), start, value)
        elif m.group("name") is not None:
            word = m.group("name")
            yield _Tok("kw" if word in _KEYWORDS else "name", word, m.start("name"))
        else:
            yield _Tok("op", m.group("op"), m.start("op"))
        pos = m.end()


class _Parser:
    def __init__(self, text: str):
        self.tokens = list(_tokenize(text))
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> _Tok:
        if self.tok.text != text:
            raise ExprError(f"expected {text!r}, found {self._describe(self.tok)}", self.tok.pos)
        return self.take()

    @staticmethod
    def _describe(tok: _Tok) -> str:
        return "end of expression" if tok.kind == "end" else repr(tok.text)

    def parse(self) -> Node:
        node = self.expression(0)
        if self.tok.kind != "end":
            raise ExprError(f"unexpected {self._describe(self.tok)}", self.tok.pos)
        return node

    def expression(self, min_power: int) -> Node:
        left = self.prefix()
        while (power := _BINARY.get(self.tok.text)) and power > min_power:
            op = self.take()
            if op.text in COMPARISONS and isinstance(left, BinOp) and left.op in COMPARISONS:
                raise ExprError("comparisons cannot be chained; join them with 'and'", op.pos)
            right = self.expression(power)
            left = BinOp(op.text, left, right, op.pos)
        return left

    def prefix(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return Num(tok.value, tok.pos)
        if tok.kind == "dur":
            return Dur(tok.text, tok.pos)
        if tok.text == "not":
            return Not(self.expression(3), tok.pos)
        if tok.text == "-":
            return Neg(self.expression(6), tok.pos)
        if tok.text == "(":
            node = self.expression(0)
            self.expect(")")
            return node
        if tok.kind == "name":
            if self.tok.text == "(":
                self.take()
                args: list[Node] = []
                while self.tok.text != ")":
                    args.append(self.expression(0))
                    if self.tok.text != ",":
                        break
                    self.take()
                self.expect(")")
                return Call(tok.text, tuple(args), tok.pos)
            return Name(tok.text, tok.pos)
        raise ExprError(f"expected a number, a KPI or a measure, found {self._describe(tok)}",
                        tok.pos)


def parse(text: str) -> Node:
    """Parse expression text into a syntax tree; raise ExprError with the offset."""
    if not text or not str(text).strip():
        raise ExprError("empty expression", 0)
    return _Parser(str(text)).parse()


# --- analysis ------------------------------------------------------------------


def walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, BinOp):
        yield from walk(node.left)
        yield from walk(node.right)
    elif isinstance(node, Not | Neg):
        yield from walk(node.operand)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from walk(arg)


def is_condition(node: Node) -> bool:
    """True when the expression yields a boolean (a comparison, and/or/not)."""
    if isinstance(node, Not):
        return True
    return isinstance(node, BinOp) and (node.op in COMPARISONS or node.op in ("and", "or"))


def first_comparison(node: Node) -> BinOp | None:
    """The first comparison: its left side is the alert's value, its right the threshold."""
    return next((n for n in walk(node) if isinstance(n, BinOp) and n.op in COMPARISONS), None)


def first_comparison_operand(node: Node) -> Node | None:
    comparison = first_comparison(node)
    return comparison.left if comparison is not None else None


def suggest(name: str, candidates: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- compilation to polars -------------------------------------------------------

Resolver = Callable[[Name], pl.Expr]


def safe_div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null where den is zero or missing (a ratio with no base has no value)."""
    return pl.when(den != 0).then(num / den).otherwise(None)


_ARITH: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": safe_div,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
}

# Plain functions over values; windowed functions live with the rule engine.
FUNCTIONS: dict[str, Callable[..., pl.Expr]] = {
    "abs": lambda x: x.abs(),
    "min": lambda *xs: pl.min_horizontal(*xs),
    "max": lambda *xs: pl.max_horizontal(*xs),
}


def compile_expr(node: Node, resolve: Resolver,
                 call: Callable[[Call], pl.Expr] | None = None) -> pl.Expr:
    """Compile a tree to one polars expression.

    ``resolve`` maps names to columns; ``call`` compiles function calls (the rule
    compiler passes one that knows the window functions).
    """
    def sub(n: Node) -> pl.Expr:
        return compile_expr(n, resolve, call)

    if isinstance(node, Num):
        return pl.lit(node.value, dtype=pl.Float64)
    if isinstance(node, Dur):
        raise ExprError(f"a duration ({node.text}) is only valid as a function argument",
                        node.pos)
    if isinstance(node, Name):
        return resolve(node)
    if isinstance(node, Neg):
        return -sub(node.operand)
    if isinstance(node, Not):
        return ~sub(node.operand)
    if isinstance(node, BinOp):
        return _ARITH[node.op](sub(node.left), sub(node.right))
    if isinstance(node, Call):
        return call(node) if call is not None else plain_call(node, sub)
    raise TypeError(f"unknown node {node!r}")


def plain_call(node: Call, sub: Callable[[Node], pl.Expr]) -> pl.Expr:
    """A call to one of the plain FUNCTIONS (no window)."""
    func = FUNCTIONS.get(node.func)
    if func is None:
        from monitor.compiler import ALL_FUNCTIONS  # the full list, for the suggestion

        raise ExprError(f"unknown function {node.func!r}{suggest(node.func, ALL_FUNCTIONS)}",
                        node.pos)
    if node.func == "abs" and len(node.args) != 1:
        raise ExprError("abs() takes 1 argument", node.pos)
    if not node.args:
        raise ExprError(f"{node.func}() needs arguments", node.pos)
    return func(*(sub(a) for a in node.args))
