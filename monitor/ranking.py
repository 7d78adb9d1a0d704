"""Segment ranking: channels, campaigns or audiences by return, with what to do about them.

Each segment's ROAS, CPA (the cost of a customer when ``new_customers`` is not
tracked), conversion and share of spend over a period, ranked by ROAS, and a
hint from DOMAIN.md's decisions: shift budget to segments with high ROAS and a
low CPA, cut or fix those with a high CPA and a low return, question those that
only buy reach. Comparisons are against the total of all segments, so a hint
says "better than the account", not "good" in the abstract. One grouped pass in
polars.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from monitor.sources.base import TS

HINTS = {
    "scale": ("shift budget here: ROAS above the account's and a lower CPA",
              "перенесите сюда бюджет: ROAS выше среднего, CPA ниже"),
    "cut": ("cut or fix: CPA far above the account's and a low return",
            "сократите или исправьте: CPA намного выше среднего, отдача низкая"),
    "reach": ("buys only reach: spend without conversions",
              "покупает только охват: расход без конверсий"),
    "keep": ("keep: near the account's average", "оставить: около среднего"),
}
MEASURES = ("cost", "conversions", "revenue", "impressions", "clicks", "leads",
            "new_customers", "customer_revenue", "customers")


def rank_segments(frame: pl.DataFrame, by: list[str], start: datetime, end: datetime,
                  min_cost_share: float = 0.01) -> pl.DataFrame:
    """One row per segment with spend, ranked by ROAS (best first); empty if no spend."""
    if frame.height == 0 or "cost" not in frame.columns or any(b not in frame.columns
                                                               for b in by):
        return pl.DataFrame()
    present = [m for m in MEASURES if m in frame.columns]
    rows = (frame.lazy().filter((pl.col(TS) >= start) & (pl.col(TS) < end))
            .filter(pl.all_horizontal(pl.col(b).is_not_null() for b in by))
            .group_by(by).agg(pl.col(m).sum().cast(pl.Float64) for m in present)
            .filter(pl.col("cost") > 0))
    for m in ("revenue", "conversions"):
        if m not in present:
            rows = rows.with_columns(pl.lit(None, pl.Float64).alias(m))
    total = rows.select(pl.col("cost").sum().alias("cost"), pl.col("revenue").sum().alias("rev"),
                        pl.col("conversions").sum().alias("conv"))
    out = rows.join(total, how="cross", suffix="_total").with_columns(
        (pl.col("revenue") / pl.col("cost")).alias("roas"),
        (pl.col("cost") / pl.col("conversions")).alias("cpa"),
        (pl.col("cost") / pl.col("cost_total")).alias("cost_share"),
        (pl.col("rev") / pl.col("cost_total")).alias("roas_total"),
        (pl.col("cost_total") / pl.col("conv")).alias("cpa_total"),
    )
    if "new_customers" in present:
        out = out.with_columns((pl.col("cost") / pl.col("new_customers")).alias("cac"))
    if {"customer_revenue", "customers"} <= set(present):
        out = out.with_columns((pl.col("customer_revenue") / pl.col("customers")).alias("ltv"))
    hint = (pl.when(pl.col("conversions").fill_null(0) == 0).then(pl.lit("reach"))
            .when((pl.col("roas") >= 1.25 * pl.col("roas_total"))
                  & (pl.col("cpa") <= pl.col("cpa_total"))).then(pl.lit("scale"))
            .when((pl.col("cpa") >= 1.5 * pl.col("cpa_total"))
                  & (pl.col("roas").fill_null(0) < pl.col("roas_total"))).then(pl.lit("cut"))
            .otherwise(pl.lit("keep")))
    out = out.with_columns(hint.alias("decision")).with_columns(
        pl.col("decision").replace_strict({k: v[0] for k, v in HINTS.items()}).alias("hint"),
        pl.col("decision").replace_strict({k: v[1] for k, v in HINTS.items()}).alias("hint_ru"),
    ).filter(pl.col("cost_share") >= min_cost_share)
    keep = [*by, "cost", "conversions", "revenue", "roas", "cpa", "cost_share", "decision",
            "hint", "hint_ru", *(c for c in ("cac", "ltv") if c in out.collect_schema())]
    return out.select(keep).sort("roas", descending=True, nulls_last=True).collect()
