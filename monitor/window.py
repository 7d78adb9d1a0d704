"""The window: the trailing history that rules read, as one in-memory polars frame.

Loaded once from the store at start and updated after every poll: a poll's rows
replace the source's rows of the periods it returns, exactly as the store does,
so the window and the store never disagree. A Window is
immutable; the daemon swaps the reference, so evaluation never sees half a merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from monitor.sources.base import TS, TS_DTYPE, label_columns, label_key


@dataclass(frozen=True)
class Window:
    frame: pl.DataFrame
    # Evaluation results that depend only on this frame (period columns, bucket
    # sums), shared by every group evaluated on it; a merge starts a new cache.
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def empty(cls) -> Window:
        return cls(pl.DataFrame(schema={"source": pl.String, TS: TS_DTYPE, "labels": pl.String}))

    def merge(self, source: str, polled: pl.DataFrame) -> Window:
        """A new window where ``polled`` (one source's poll) replaces its periods."""
        if polled.height == 0:
            return self
        keyed = polled.with_columns(
            pl.lit(source).alias("source"), label_key(label_columns(polled)).alias("labels"))
        periods = keyed.select("source", TS).unique()
        kept = self.frame.join(periods, on=["source", TS], how="anti")
        # No sort: the engine finds periods by lookup, so row order does not matter.
        return Window(pl.concat([kept, keyed], how="diagonal_relaxed"))

    def trim(self, since: datetime) -> Window:
        """Drop rows older than any rule can read."""
        return Window(self.frame.filter(pl.col(TS) >= since))

    @property
    def measures(self) -> set[str]:
        return {c for c, t in self.frame.schema.items() if t.is_numeric()}

    @property
    def labels(self) -> set[str]:
        return set(label_columns(self.frame))
