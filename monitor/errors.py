"""The one error hierarchy: every user-facing failure carries a message and an exit code.

The CLI prints ``error: <message>`` and exits with ``exit_code``; tracebacks are
reserved for bugs.
"""

from __future__ import annotations

from dataclasses import dataclass


class KpimonError(Exception):
    """Base of every error a user can cause or fix."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One located problem in a user's file."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    path: str  # dotted path into the document, e.g. "groups[0].rules[2].expr"
    message: str
    excerpt: str = ""  # optional source line with a caret under the column

    def __str__(self) -> str:
        head = f"{self.file}:{self.line}:{self.col}: {self.path or '<root>'}: {self.message}"
        return f"{head}\n{self.excerpt}" if self.excerpt else head


class ConfigError(KpimonError):
    """A config, rule or template file is invalid; lists every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem("<config>", 0, 0, "", problems)]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(KpimonError):
    """A source could not be read; the poll is refused and stored data kept.

    ``kind`` sorts failures for the ``kpimon_source_errors_total`` counter:
    read (file or I/O), connect, timeout, http, auth, query, parse, rejected.
    """

    def __init__(self, message: str, kind: str = "read"):
        super().__init__(message)
        self.kind = kind


class StoreError(KpimonError):
    """The store could not be opened or written."""


class UsageError(KpimonError):
    """A command-line argument is invalid."""

    exit_code = 2
