"""YAML documents that remember where every value came from.

Pydantic reports errors by location tuples (``("groups", 0, "rules", 2, "expr")``);
this module keeps the YAML node mark of each such path so that every error can be
printed as ``file:line:col``. It also expands ``${VAR}`` references from the
environment, so secrets stay out of git.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.errors import ConfigError, Problem

Loc = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Located:
    """A parsed document with the (line, col) of every path in it, both 1-based."""

    file: str
    data: Any
    marks: Mapping[Loc, tuple[int, int]] = field(default_factory=dict)
    # For plain or quoted scalars on one line: the column where the text starts,
    # so a problem inside an expression can point at its exact character.
    text_starts: Mapping[Loc, tuple[int, int]] = field(default_factory=dict)
    key_marks: Mapping[Loc, tuple[int, int]] = field(default_factory=dict)

    def mark(self, loc: Loc) -> tuple[int, int]:
        """The mark of ``loc`` or of its nearest ancestor present in the document."""
        loc = tuple(loc)
        while loc and loc not in self.marks:
            loc = loc[:-1]
        return self.marks.get(loc, (1, 1))

    def problem(self, loc: Loc, message: str, offset: int | None = None,
                at_key: bool = False) -> Problem:
        """A Problem at ``loc``; ``offset`` is a character index inside a scalar's text.

        ``at_key`` points at the key itself (for an unknown key) rather than its value.
        """
        line, col = self.mark(loc)
        if at_key and tuple(loc) in self.key_marks:
            line, col = self.key_marks[tuple(loc)]
        excerpt = ""
        if offset is not None and tuple(loc) in self.text_starts:
            line, col = self.text_starts[tuple(loc)]
            col += offset
            excerpt = _excerpt(self.file, line, col)
        return Problem(self.file, line, col, format_loc(loc), message, excerpt)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _excerpt(file: str, line: int, col: int) -> str:
    try:
        text = Path(file).read_text(encoding="utf-8").splitlines()[line - 1]
    except (OSError, IndexError):
        return ""
    return f"  {text}\n  {' ' * (col - 1)}^"


class _Builder:
    """Turns a composed YAML node tree into plain data plus marks, strictly."""

    def __init__(self, file: str, env: Mapping[str, str]):
        self.file, self.env = file, env
        self.marks: dict[Loc, tuple[int, int]] = {}
        self.text_starts: dict[Loc, tuple[int, int]] = {}
        self.key_marks: dict[Loc, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node | None, loc: Loc = ()) -> Any:
        if node is None:
            return None
        self.marks[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, loc)
                if key in out:
                    self._problem(key_node, (*loc, key), f"duplicate key {key!r}")
                out[key] = self.build(value_node, (*loc, key))
                self.key_marks[(*loc, key)] = (key_node.start_mark.line + 1,
                                               key_node.start_mark.column + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        value = self._scalars.construct_object(node)
        if node.style in (None, "'", '"') and node.start_mark.line == node.end_mark.line:
            quote = 1 if node.style in ("'", '"') else 0
            self.text_starts[loc] = (node.start_mark.line + 1, node.start_mark.column + 1 + quote)
        if isinstance(value, str) and "${" in value:
            value = self._expand(value, node, loc)
        return value

    def _expand(self, text: str, node: yaml.Node, loc: Loc) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self._problem(node, loc, f"environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(sub, text)

    def _problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.file, m.line + 1, m.column + 1, format_loc(loc), message))


def load_yaml(path: str | Path, env: Mapping[str, str] | None = None) -> Located:
    """Parse one YAML file; raise ConfigError with file:line:col on any problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(file, 1, 1, "", f"cannot read file: {exc.strerror}")]) from None
    return parse_yaml(text, file, env)


def parse_yaml(text: str, file: str, env: Mapping[str, str] | None = None) -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([Problem(file, line, col, "", f"YAML syntax: {exc.problem}")]) from None
    builder = _Builder(file, os.environ if env is None else env)
    data = builder.build(node)
    if builder.problems:
        raise ConfigError(builder.problems)
    return Located(file, data, builder.marks, builder.text_starts, builder.key_marks)


def validate(doc: Located, model: Callable[[Any], Any]) -> Any:
    """Validate ``doc.data`` with a pydantic model; every error becomes a located Problem."""
    try:
        return model(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise ConfigError(problems_from(doc, exc)) from None


def problems_from(doc: Located, exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        # Discriminated unions insert the tag ("slack") into the loc; drop parts
        # that are not real keys of the document so the path reads as written.
        loc = _real_loc(doc.data, prefix + tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        problems.append(doc.problem(loc, message, at_key=err["type"] == "extra_forbidden"))
    return problems


def _real_loc(data: Any, loc: Loc) -> Loc:
    """Drop the parts of a pydantic loc that are not keys of the document.

    Tagged unions put their tag ("csv") or an internal name ("function-after[...]")
    into the loc; a missing or unknown key is kept as the last part.
    """
    out: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif isinstance(node, dict) and (part == node.get("type") or _is_internal(part)):
            continue
        else:
            out.append(part)
            break
        out.append(part)
    return tuple(out)


def _is_internal(part: str | int) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith(("function-", "tagged-")))
