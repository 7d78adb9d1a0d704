"""Anomaly functions on labeled real series (NAB subset in ../shared/data/nab-dev).

    python -m bench.nab [DATA_DIR]

Each CSV becomes a ``csv`` source; a spike rule is replayed over it with
``kpimon backtest``'s engine at hourly steps. A labeled window counts as caught
when an alert starts inside it; an alert starting outside every window is a
false alarm. Series are 5-minute counts; rules read hourly sums.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from monitor import backtest

# Each rule also has keep_firing_for: 6h, so one burst is one alert, not a flap.
RULES = {
    "zscore": "zscore(value, 3d) > 3.5",
    "zscore_2sided": "abs(zscore(value, 3d)) > 3.5",
    "zscore7_5": "abs(zscore(value, 7d)) > 5",
    "baseline_x2": "value > 2 * baseline(value, 3d) and value > 1.5 * prev(value, 1d)",
}


def run_one(csv: Path, workdir: Path) -> dict[str, list[datetime]]:
    """Alert start times per rule of RULES, replayed over one series."""
    rules = "".join(f"""
              - alert: {name}
                expr: "{expr}"
                over: 1h
                keep_firing_for: 6h""" for name, expr in RULES.items())
    (workdir / "rules.yaml").write_text(textwrap.dedent("""
        groups:
          - name: nab
            interval: 1h
            rules:""") + rules + "\n")
    config = workdir / "kpimon.yaml"
    config.write_text(textwrap.dedent(f"""
        global: {{timezone: UTC}}
        store: {{url: "sqlite:///:memory:"}}
        sources:
          - {{name: nab, type: csv, path: "{csv}", timestamp: timestamp,
              timestamp_format: "%Y-%m-%d %H:%M:%S", measures: [value], granularity: hour}}
        rule_files: [rules.yaml]
    """))
    stamps = pl.read_csv(csv, try_parse_dates=True)["timestamp"]
    first = stamps.min().replace(tzinfo=UTC)
    last = stamps.max().replace(tzinfo=UTC)
    start = (first + timedelta(days=3, hours=1)).replace(minute=0, second=0)
    report = backtest.run(str(config), start, last, timedelta(hours=1), poll=True)
    out: dict[str, list[datetime]] = {name: [] for name in RULES}
    for alert in report["alerts"]:
        out[alert["rule"]].append(datetime.fromisoformat(alert["start"]))
    return out


def main(data: Path) -> None:
    labels = json.loads((data / "labels.json").read_text())
    totals = {name: [0, 0, 0] for name in RULES}  # windows, caught, false alarms
    files = 0
    with tempfile.TemporaryDirectory() as tmp:
        for file, spans in sorted(labels.items()):
            csv = data / file
            if not csv.exists():
                continue
            files += 1
            starts = run_one(csv, Path(tmp))
            spans = [(datetime.fromisoformat(a).replace(tzinfo=UTC),
                      datetime.fromisoformat(b).replace(tzinfo=UTC)) for a, b in spans]
            for name, times in starts.items():
                totals[name][0] += len(spans)
                totals[name][1] += sum(any(a <= s <= b for s in times) for a, b in spans)
                totals[name][2] += sum(not any(a <= s <= b for a, b in spans) for s in times)
    print(f"{files} series; a window is caught when an alert starts inside it")
    print(f"{'rule':<15} {'windows':>7} {'caught':>6} {'false alarms':>12}")
    for name, (windows, caught, false) in totals.items():
        print(f"{name:<15} {windows:>7} {caught:>6} {false:>12}   {RULES[name]}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1
         else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nab-dev")
