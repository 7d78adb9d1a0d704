"""The alert state machine, one row per (rule, series), computed for all at once.

States follow Prometheus: a true condition makes an alert PENDING, and FIRING
once it has held for ``for``; when it stops holding, a FIRING alert stays FIRING
for ``keep_firing_for`` and then becomes RESOLVED, which is kept for a while so
the API and a quick re-fire can see it. The whole table advances in one polars
expression per column: no Python loop per series.

The state frame is what the store persists; restoring it after a restart means a
firing alert stays firing (no duplicate "firing" message) and one that cleared
while the daemon was down still gets its "resolved" message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import polars as pl

from monitor.rulefile import Rule


class AlertState(StrEnum):
    INACTIVE = "inactive"  # condition false: the row is dropped, only shown by eval
    PENDING = "pending"  # condition true for less than `for`
    FIRING = "firing"  # condition held for `for` (or is kept by keep_firing_for)
    RESOLVED = "resolved"  # was firing, condition false: kept RESOLVED_RETENTION for the API


RESOLVED_RETENTION = timedelta(minutes=15)
TIME = pl.Datetime("us", "UTC")
STATE_SCHEMA = {
    "rule": pl.String, "series": pl.String, "state": pl.String, "active_at": pl.Int64,
    "fired_at": pl.Int64, "resolved_at": pl.Int64, "last_true_at": pl.Int64,
    "notified_at": pl.Int64, "value": pl.Float64, "kpi_values": pl.String,
}
TRANSITION_SCHEMA = {**STATE_SCHEMA, "previous": pl.String}


@dataclass(frozen=True)
class Step:
    """The new state of the evaluated rules and the rows that changed state."""

    state: pl.DataFrame  # STATE_SCHEMA, only non-inactive rows of the evaluated rules
    transitions: pl.DataFrame  # TRANSITION_SCHEMA: rows whose state changed


def empty_state() -> pl.DataFrame:
    return pl.DataFrame(schema=STATE_SCHEMA)


def advance(previous: pl.DataFrame, candidates: pl.DataFrame, rules: Sequence[Rule],
            now: datetime) -> Step:
    """Advance the state of ``rules`` given this evaluation's candidates.

    ``previous`` may hold other rules' rows; they are not touched or returned.
    Times are integer microseconds (UTC) as the store keeps them. A firing alert
    resolves when its ``clear`` column holds (the resolve condition, by default
    "the condition no longer holds"). A series with no row this time follows its
    rule's ``no_data``: ``ok`` resolves it, ``keep_state`` keeps it as it was,
    ``alert`` treats it as holding.
    """
    now_us = int(now.timestamp() * 1_000_000)
    ids = [r.id for r in rules]
    params = pl.DataFrame({
        "rule": ids,
        "for_us": [int(r.spec.for_.total_seconds() * 1e6) for r in rules],
        "keep_us": [int(r.spec.keep_firing_for.total_seconds() * 1e6) for r in rules],
        "no_data": [r.spec.no_data for r in rules],
    }, schema={"rule": pl.String, "for_us": pl.Int64, "keep_us": pl.Int64,
               "no_data": pl.String})
    prev = previous.lazy().filter(pl.col("rule").is_in(ids))
    # Only series that hold now or had a state matter: most series are quiet,
    # and the join below should not carry them.
    cands = candidates.lazy().filter(pl.col("rule").is_in(ids))
    relevant = pl.concat([
        cands.filter(pl.col("active") & pl.col("sufficient")),
        cands.join(prev.select("rule", "series"), on=["rule", "series"], how="semi"),
    ]).unique(["rule", "series"], keep="first")
    cur = relevant.select(
        "rule", "series", (pl.col("active") & pl.col("sufficient")).alias("holds"),
        "clear", pl.col("value").alias("cur_value"),
        pl.col("kpi_values").alias("cur_kpi_values"), pl.lit(True).alias("seen"),
    )
    joined = (prev.join(cur, on=["rule", "series"], how="full", coalesce=True)
              .join(params.lazy(), on="rule", how="left")
              .with_columns(pl.col("seen").fill_null(False),
                            pl.col("state").fill_null(AlertState.INACTIVE).alias("previous")))
    untouched = ~pl.col("seen") & (pl.col("no_data") == "keep_state")
    kept = joined.filter(untouched).select(list(STATE_SCHEMA))
    joined = joined.filter(~untouched)
    was = pl.col("previous")
    cond = (pl.when(~pl.col("seen")).then(pl.col("no_data") == "alert")
            .when(was == AlertState.FIRING).then(~pl.col("clear").fill_null(False))
            .otherwise(pl.col("holds").fill_null(False)))
    joined = joined.with_columns(cond.alias("cond"))
    cond = pl.col("cond")
    active_at = (pl.when(cond & was.is_in([AlertState.PENDING, AlertState.FIRING]))
                 .then(pl.col("active_at")).when(cond).then(pl.lit(now_us))
                 .otherwise(pl.col("active_at")))
    kept_firing = ((was == AlertState.FIRING) & ~cond
                   & (pl.lit(now_us) - pl.col("last_true_at") < pl.col("keep_us")))
    retention = int(RESOLVED_RETENTION.total_seconds() * 1e6)
    state = (
        pl.when(cond & ((was == AlertState.FIRING)
                        | (pl.lit(now_us) - pl.col("new_active_at") >= pl.col("for_us"))))
        .then(pl.lit(AlertState.FIRING))
        .when(cond).then(pl.lit(AlertState.PENDING))
        .when(kept_firing).then(pl.lit(AlertState.FIRING))
        .when(was == AlertState.FIRING).then(pl.lit(AlertState.RESOLVED))
        .when((was == AlertState.RESOLVED)
              & (pl.lit(now_us) - pl.col("resolved_at") < retention))
        .then(pl.lit(AlertState.RESOLVED))
        .otherwise(pl.lit(AlertState.INACTIVE))
    )
    out = (joined.with_columns(active_at.alias("new_active_at"))
           .with_columns(state.alias("new_state"))
           .with_columns(
               pl.col("new_active_at").alias("active_at"),
               pl.when((pl.col("new_state") == AlertState.FIRING) & (was != AlertState.FIRING))
               .then(pl.lit(now_us)).otherwise(pl.col("fired_at")).alias("fired_at"),
               pl.when((pl.col("new_state") == AlertState.RESOLVED)
                       & (was != AlertState.RESOLVED))
               .then(pl.lit(now_us)).otherwise(pl.col("resolved_at")).alias("resolved_at"),
               pl.when(cond).then(pl.lit(now_us)).otherwise(pl.col("last_true_at"))
               .alias("last_true_at"),
               pl.when(cond & pl.col("seen")).then(pl.col("cur_value"))
               .otherwise(pl.col("value")).alias("value"),
               pl.when(cond & pl.col("seen")).then(pl.col("cur_kpi_values"))
               .otherwise(pl.col("kpi_values")).alias("kpi_values"),
               pl.col("new_state").alias("state"),
           ))
    # A re-fire starts a new episode: forget the old episode's times.
    out = out.with_columns(
        pl.when(pl.col("state") == AlertState.PENDING).then(None)
        .otherwise(pl.col("fired_at")).alias("fired_at"),
        pl.when(pl.col("state").is_in([AlertState.PENDING, AlertState.FIRING])).then(None)
        .otherwise(pl.col("resolved_at")).alias("resolved_at"),
        pl.when((pl.col("state") == AlertState.PENDING) & (was != AlertState.PENDING))
        .then(None).otherwise(pl.col("notified_at")).alias("notified_at"),
    )
    transitions = out.filter(pl.col("state") != was).select(list(TRANSITION_SCHEMA))
    state_rows = out.filter(pl.col("state") != AlertState.INACTIVE).select(list(STATE_SCHEMA))
    kept, state_rows, transitions = pl.collect_all([
        kept.cast(STATE_SCHEMA), state_rows.cast(STATE_SCHEMA),
        transitions.cast(TRANSITION_SCHEMA)])
    return Step(pl.concat([kept, state_rows]), transitions)


def replace_rules(state: pl.DataFrame, rules: Sequence[str], new: pl.DataFrame) -> pl.DataFrame:
    """The whole state table with the rows of ``rules`` replaced by ``new``."""
    return pl.concat([state.filter(~pl.col("rule").is_in(list(rules))), new])
