"""The alert state machine: every transition, driven by explicit times."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from monitor.alerts import RESOLVED_RETENTION, AlertState, advance, empty_state, replace_rules
from tests.conftest import NOW, load_ruleset

RULES = """
groups:
  - name: g
    rules:
      - alert: Slow
        expr: cpa > 100
        for: 10m
      - alert: Instant
        expr: cpa > 100
      - alert: Sticky
        expr: cpa > 100
        keep_firing_for: 30m
"""


@pytest.fixture
def rules(tmp_path):
    return load_ruleset(tmp_path, RULES)


def candidates(rule: str, active: bool, value: float = 150.0, sufficient: bool = True,
               series: str = '{"campaign":"a"}') -> pl.DataFrame:
    return pl.DataFrame({"rule": [rule], "series": [series], "value": [value],
                         "active": [active], "sufficient": [sufficient],
                         "clear": [not (active and sufficient)],
                         "kpi_values": [f'{{"cpa":{value}}}']})


def run(rules, name, steps):
    """Feed (minutes after NOW, active) steps; return the states seen after each step."""
    rule = [rules.rule(name)]
    state, seen = empty_state(), []
    for minutes, active in steps:
        step = advance(state, candidates(name, active), rule, NOW + timedelta(minutes=minutes))
        state = replace_rules(state, [name], step.state)
        seen.append(step.state["state"].to_list()[0] if step.state.height else "inactive")
    return seen, state


def test_pending_until_for_has_elapsed_then_firing(rules):
    seen, state = run(rules, "Slow", [(0, True), (5, True), (10, True), (15, True)])
    assert seen == ["pending", "pending", "firing", "firing"]
    row = state.row(0, named=True)
    start = int(NOW.timestamp() * 1e6)
    assert row["active_at"] == start
    assert row["fired_at"] == start + 10 * 60 * 1_000_000


def test_pending_that_clears_goes_back_to_inactive_without_resolving(rules):
    seen, state = run(rules, "Slow", [(0, True), (5, False)])
    assert seen == ["pending", "inactive"]
    assert state.height == 0


def test_for_zero_fires_at_once_and_resolves_when_the_condition_clears(rules):
    seen, state = run(rules, "Instant", [(0, True), (1, False)])
    assert seen == ["firing", "resolved"]
    assert state.row(0, named=True)["resolved_at"] == int(
        (NOW + timedelta(minutes=1)).timestamp() * 1e6)


def test_resolved_is_kept_for_a_while_then_dropped(rules):
    minutes = RESOLVED_RETENTION.total_seconds() / 60
    seen, state = run(rules, "Instant", [(0, True), (1, False), (2, False),
                                         (1 + minutes, False)])
    assert seen == ["firing", "resolved", "resolved", "inactive"]
    assert state.height == 0


def test_refire_after_resolve_starts_a_new_episode(rules):
    seen, state = run(rules, "Slow", [(0, True), (10, True), (11, False), (12, True)])
    assert seen == ["pending", "firing", "resolved", "pending"]
    row = state.row(0, named=True)
    assert row["fired_at"] is None and row["resolved_at"] is None
    assert row["active_at"] == int((NOW + timedelta(minutes=12)).timestamp() * 1e6)


def test_keep_firing_for_holds_then_resolves(rules):
    seen, _ = run(rules, "Sticky", [(0, True), (10, False), (29, False), (31, False)])
    assert seen == ["firing", "firing", "firing", "resolved"]


def test_insufficient_volume_does_not_fire(rules):
    rule = [rules.rule("Instant")]
    step = advance(empty_state(), candidates("Instant", True, sufficient=False), rule, NOW)
    assert step.state.height == 0 and step.transitions.height == 0


def test_series_that_disappears_resolves(rules):
    rule = [rules.rule("Instant")]
    step = advance(empty_state(), candidates("Instant", True), rule, NOW)
    empty = candidates("Instant", True).clear()
    step2 = advance(step.state, empty, rule, NOW + timedelta(minutes=1))
    assert step2.state["state"].to_list() == [AlertState.RESOLVED]


def test_transitions_list_each_change_once(rules):
    rule = [rules.rule("Slow")]
    s1 = advance(empty_state(), candidates("Slow", True), rule, NOW)
    assert s1.transitions.select("previous", "state").rows() == [("inactive", "pending")]
    s2 = advance(s1.state, candidates("Slow", True), rule, NOW + timedelta(minutes=1))
    assert s2.transitions.height == 0
    s3 = advance(s2.state, candidates("Slow", True), rule, NOW + timedelta(minutes=10))
    assert s3.transitions.select("previous", "state").rows() == [("pending", "firing")]


def test_other_rules_rows_are_left_alone(rules):
    slow, instant = [rules.rule("Slow")], [rules.rule("Instant")]
    state = advance(empty_state(), candidates("Slow", True), slow, NOW).state
    step = advance(state, candidates("Instant", True), instant, NOW)
    assert step.state["rule"].to_list() == ["Instant"]
    merged = replace_rules(state, ["Instant"], step.state)
    assert sorted(merged["rule"].to_list()) == ["Instant", "Slow"]


def test_many_series_advance_in_one_vectorized_step(rules):
    n = 50_000
    cand = pl.DataFrame({
        "rule": ["Instant"] * n, "series": [f'{{"c":"{i}"}}' for i in range(n)],
        "value": [float(i) for i in range(n)], "active": [i % 2 == 0 for i in range(n)],
        "sufficient": [True] * n, "clear": [i % 2 == 1 for i in range(n)],
        "kpi_values": ["{}"] * n,
    })
    step = advance(empty_state(), cand, [rules.rule("Instant")], NOW)
    assert step.state.height == n // 2
    assert set(step.state["state"].to_list()) == {"firing"}
