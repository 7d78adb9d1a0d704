"""PNG charts for reports: a KPI by day, the previous period faint, the target dashed.

matplotlib's object API on the Agg canvas (no pyplot state), so charts can be
drawn from any thread of the daemon.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import date

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

COLOR, PREVIOUS, TARGET = "#1f6feb", "#9aa4b2", "#d1242f"


def kpi_chart(title: str, days: Sequence[date], values: Sequence[float | None],
              previous: Sequence[float | None] | None, target: float | None,
              fmt: Callable[[float], str], labels: tuple[str, str, str]) -> bytes:
    """One KPI over the report's days as PNG bytes. ``labels``: this period, the
    previous period and the target, in the reader's language."""
    fig = Figure(figsize=(6.4, 2.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(len(days)))
    if previous:
        ax.plot(x[:len(previous)], _nan(previous), color=PREVIOUS, linewidth=1.4,
                label=labels[1])
    ax.plot(x, _nan(values), color=COLOR, linewidth=2.2, marker="o", markersize=3,
            label=labels[0])
    if target is not None:
        ax.axhline(target, color=TARGET, linestyle="--", linewidth=1.3, label=labels[2])
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    step = max(1, len(days) // 8)
    ax.set_xticks(x[::step], [d.strftime("%d.%m") for d in days][::step], fontsize=8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v)))
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="#e5e7eb")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="best")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]
