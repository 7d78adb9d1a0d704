"""Durations as rule and config files write them: ``30s``, ``15m``, ``1h30m``, ``7d``, ``2w``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from monitor.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse ``1h30m``-style text (or plain seconds) into a timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError("a duration like 15m, 1h or 7d is expected")
    if isinstance(text, int | float):
        return timedelta(seconds=text)
    s = str(text).strip()
    if s == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {s!r}: use forms like 30s, 15m, 1h30m, 7d")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """Inverse of parse_duration for whole seconds: 90061s -> '1d1h1m1s'."""
    secs = int(td.total_seconds())
    if secs == 0:
        return "0s"
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if unit == "w" and secs % size:
            continue
        n, secs = divmod(secs, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 instant from the command line (UTC when it has no offset)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: invalid time {text!r}; use ISO 8601 like "
                         "2026-03-14T09:00:00+03:00") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
