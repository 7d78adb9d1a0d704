"""Rule files: YAML groups of alerting rules, validated strictly and compiled.

Every problem in every file is collected before anything is reported, each at
``file:line:col``; expression errors point at the exact character with a caret.
A name that is neither a KPI nor a known measure is an error with the nearest
suggestion, because a typo would otherwise be a rule that silently never fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import jinja2
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from monitor import expr as ex
from monitor.durations import Duration
from monitor.errors import ConfigError, Problem
from monitor.kpis import Catalog
from monitor.yamlsrc import Located, load_yaml, problems_from

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              populate_by_name=True)


class RuleSpec(_Strict):
    alert: str = Field(pattern=IDENT, description="Alert name; unique across all files.")
    expr: str = Field(description="A condition over KPIs and measures, e.g. cpa > 650.")
    over: Duration = Field(default="1d", description="Trailing window: whole days end at "
                           "local midnight, whole hours at the hour.")
    by: list[str] = Field(default_factory=list, description="Labels to group by.")
    min_volume: dict[str, float] = Field(default_factory=dict,
                                         description="Minimum sums per measure to evaluate.")
    for_: Duration = Field(default="0s", alias="for")
    keep_firing_for: Duration = Field(default="0s")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class GroupSpec(_Strict):
    name: str
    interval: Duration | None = None
    rules: list[RuleSpec]


class RuleFileSpec(_Strict):
    groups: list[GroupSpec]


@dataclass(frozen=True)
class Rule:
    """A compiled rule: its spec plus the polars expressions that evaluate it."""

    spec: RuleSpec
    group: str
    file: str
    condition: pl.Expr = field(repr=False, compare=False)
    value: pl.Expr = field(repr=False, compare=False)
    kpis: tuple[str, ...]  # KPIs (and measures) named in expr: exported and shown
    measures: frozenset[str]  # raw measures the window must sum
    annotation_templates: dict[str, jinja2.Template] = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.alert

    @property
    def by(self) -> tuple[str, ...]:
        return tuple(self.spec.by)


@dataclass(frozen=True)
class Group:
    name: str
    file: str
    interval: timedelta | None
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class RuleSet:
    groups: tuple[Group, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r for g in self.groups for r in g.rules)

    def rule(self, name: str) -> Rule:
        return next(r for r in self.rules if r.name == name)

    @property
    def longest_window(self) -> timedelta:
        return max((r.spec.over for r in self.rules), default=timedelta(days=1))


@dataclass(frozen=True)
class Vocabulary:
    """Names a rule may use: KPIs from the catalog, measures and labels from sources."""

    catalog: Catalog
    measures: frozenset[str]
    labels: frozenset[str] | None = None  # None: not known (no sources configured)


def load_rules(paths: list[Path], vocab: Vocabulary, templates) -> RuleSet:
    """Load and compile every rule file; raise one ConfigError listing every problem."""
    groups: list[Group] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            doc = load_yaml(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        groups.extend(_compile_file(doc, vocab, templates, seen, problems))
    if problems:
        raise ConfigError(problems)
    return RuleSet(tuple(groups))


def _compile_file(doc: Located, vocab: Vocabulary, templates, seen: dict[str, str],
                  problems: list[Problem]) -> list[Group]:
    """Validate group by group and rule by rule, so one bad rule hides no other problem."""
    data = doc.data if doc.data is not None else {}
    try:
        RuleFileSpec.model_validate({**data, "groups": []} if isinstance(data, dict) else data)
    except ValidationError as exc:
        problems.extend(problems_from(doc, exc))
        return []
    raw_groups = data.get("groups")
    if not isinstance(raw_groups, list):
        problems.append(doc.problem(("groups",), "a list of rule groups is required"))
        return []
    groups = []
    for gi, raw_group in enumerate(raw_groups):
        raw_rules = raw_group.get("rules") if isinstance(raw_group, dict) else None
        try:
            group = GroupSpec.model_validate(
                {**raw_group, "rules": []} if isinstance(raw_rules, list) else raw_group)
        except ValidationError as exc:
            problems.extend(problems_from(doc, exc, ("groups", gi)))
            continue
        rules = []
        for ri, raw_rule in enumerate(raw_rules):
            loc = ("groups", gi, "rules", ri)
            try:
                rule = RuleSpec.model_validate(raw_rule)
            except ValidationError as exc:
                problems.extend(problems_from(doc, exc, loc))
                continue
            if rule.alert in seen:
                problems.append(doc.problem((*loc, "alert"), f"alert {rule.alert!r} is "
                                            f"already defined in {seen[rule.alert]}"))
            seen.setdefault(rule.alert, doc.file)
            compiled = _compile_rule(rule, group.name, doc, loc, vocab, templates, problems)
            if compiled:
                rules.append(compiled)
        groups.append(Group(group.name, doc.file, group.interval, tuple(rules)))
    return groups


def _compile_rule(spec: RuleSpec, group: str, doc: Located, loc: tuple, vocab: Vocabulary,
                  templates, problems: list[Problem]) -> Rule | None:
    before = len(problems)
    try:
        tree = ex.parse(spec.expr)
    except ex.ExprError as err:
        problems.append(doc.problem((*loc, "expr"), err.message, offset=err.pos))
        return None
    known = vocab.catalog.names | vocab.measures
    for node in ex.walk(tree):
        if isinstance(node, ex.Name) and node.name not in known:
            problems.append(doc.problem(
                (*loc, "expr"), f"unknown KPI or measure {node.name!r}"
                f"{ex.suggest(node.name, known)}", offset=node.pos))
    if not ex.is_condition(tree):
        problems.append(doc.problem((*loc, "expr"), "expr must be a condition, such as "
                                    "'cpa > 650' or 'ctr > 5% and cr < 1%'", offset=0))
    for measure in spec.min_volume:
        if measure not in vocab.measures:
            problems.append(doc.problem((*loc, "min_volume", measure), f"unknown measure "
                                        f"{measure!r}{ex.suggest(measure, vocab.measures)}"))
    if vocab.labels is not None:
        for i, label in enumerate(spec.by):
            if label not in vocab.labels:
                problems.append(doc.problem((*loc, "by", i), f"no source has the label "
                                            f"{label!r}{ex.suggest(label, vocab.labels)}"))
    compiled_annotations = {}
    for key, text in {**spec.annotations, **spec.labels}.items():
        try:
            compiled_annotations[key] = templates.compile_string(text)
        except jinja2.TemplateSyntaxError as err:
            where = "annotations" if key in spec.annotations else "labels"
            problems.append(doc.problem((*loc, where, key), f"template: {err.message}"))
    if len(problems) > before:
        return None
    try:
        condition = ex.compile_expr(tree, lambda n: vocab.catalog.column(n.name))
        value_node = ex.first_comparison_operand(tree)
        value = (ex.compile_expr(value_node, lambda n: vocab.catalog.column(n.name))
                 if value_node is not None else pl.lit(None, pl.Float64))
    except ex.ExprError as err:
        problems.append(doc.problem((*loc, "expr"), err.message, offset=err.pos))
        return None
    names = tuple(dict.fromkeys(n.name for n in ex.walk(tree) if isinstance(n, ex.Name)))
    measures = frozenset(vocab.catalog.expand(tree)) | frozenset(spec.min_volume)
    return Rule(spec, group, doc.file, condition, value, names, measures, compiled_annotations)
