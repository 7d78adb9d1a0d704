"""The expression language: parsing, precedence, errors at columns, null semantics."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor import expr as ex
from monitor.kpis import Catalog


def evaluate(text: str, frame: pl.DataFrame) -> list:
    catalog = Catalog()
    tree = ex.parse(text)
    return frame.select(ex.compile_expr(tree, lambda n: catalog.column(n.name)).alias("x"))[
        "x"].to_list()


def test_precedence_and_percent_literals():
    tree = ex.parse("ctr > 5% and cr < 1% or not cpa <= 2 * 300 + 50")
    assert isinstance(tree, ex.BinOp) and tree.op == "or"
    assert tree.left.op == "and"
    assert tree.left.left.right == ex.Num(0.05, 6)
    frame = pl.DataFrame({"x": [1.0]})
    assert evaluate("2 + 3 * 4 - 10 / 5", frame) == [12.0]
    assert evaluate("-(2 - 5) * 2", frame) == [6.0]


@pytest.mark.parametrize(("text", "pos", "message"), [
    ("cpa > > 3", 6, "expected a number"),
    ("cpa > 650 650", 10, "unexpected '650'"),
    ("(cpa > 650", 10, "expected ')'"),
    ("cpa > 6 $", 8, "unexpected character"),
    ("cpa > 1 > 2", 8, "cannot be chained"),
    ("", 0, "empty expression"),
])
def test_syntax_errors_point_at_the_column(text, pos, message):
    with pytest.raises(ex.ExprError) as info:
        ex.parse(text)
    assert info.value.pos == pos
    assert message in info.value.message


def test_division_by_zero_or_missing_is_null_not_inf():
    frame = pl.DataFrame({"cost": [100.0, 100.0, 0.0, None],
                          "conversions": [4.0, 0.0, 0.0, 2.0]})
    assert evaluate("cpa", frame) == [25.0, None, None, None]
    # A comparison with no value is not true; and/or follow three-valued logic.
    assert evaluate("cpa > 10", frame) == [True, None, None, None]
    assert evaluate("cpa > 10 or cost > 50", frame) == [True, True, None, None]


def test_first_comparison_operand_is_the_reported_value():
    tree = ex.parse("ctr > 5% and cr < 1%")
    assert ex.first_comparison_operand(tree) == ex.Name("ctr", 0)
    assert ex.is_condition(tree)
    assert not ex.is_condition(ex.parse("cost / clicks"))


def test_unknown_function_suggests_the_nearest():
    tree = ex.parse("abss(cpa) > 3")
    with pytest.raises(ex.ExprError, match="did you mean 'abs'"):
        ex.compile_expr(tree, lambda n: pl.col(n.name))


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), min_size=1,
                max_size=30))
def test_ratio_of_sums_equals_formula_over_totals(rows):
    """A KPI over a group is sum(numerator) / sum(denominator), never a mean of ratios."""
    frame = pl.DataFrame({"clicks": [float(c) for c, _ in rows],
                          "impressions": [float(i) for _, i in rows]}).sum()
    total_clicks = sum(c for c, _ in rows)
    total_impr = sum(i for _, i in rows)
    [ctr] = evaluate("ctr", frame)
    if total_impr == 0:
        assert ctr is None
    else:
        assert ctr == pytest.approx(total_clicks / total_impr)
