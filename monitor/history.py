"""History for one-off commands (``eval``, ``backtest``): stored rows plus a fresh poll.

The sources are polled into memory only: a one-off command never writes the
store the daemon owns. A failing source is reported and its stored rows used.
"""

from __future__ import annotations

import logging
from datetime import datetime

import polars as pl

from monitor.errors import KpimonError
from monitor.runtime import Runtime
from monitor.sources.base import TS
from monitor.store import Store
from monitor.window import Window

log = logging.getLogger("kpimon.history")


def load_history(rt: Runtime, since: datetime, until: datetime, poll: bool) -> pl.DataFrame:
    store = Store(rt.config.store.url, rt.loaded.base_dir)
    try:
        frame = store.load_observations(since)
    finally:
        store.close()
    window = Window(frame) if frame.height else Window.empty()
    if poll:
        for name, source in rt.sources.items():
            try:
                window = window.merge(name, source.poll(since, until))
            except KpimonError as exc:
                log.error("source %s: %s (using stored data)", name, exc)
    return window.frame.filter(pl.col(TS) < until)
