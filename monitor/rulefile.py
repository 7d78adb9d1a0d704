"""Rule files: YAML groups of alerting rules, validated strictly and compiled.

Every problem in every file is collected before anything is reported, each at
``file:line:col``; expression errors point at the exact character with a caret.
A name that is neither a KPI nor a known measure is an error with the nearest
suggestion, because a typo would otherwise be a rule that silently never fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

import jinja2
import polars as pl
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor import expr as ex
from monitor.compiler import WINDOW, BucketStat, RuleCompiler, Span
from monitor.durations import Duration
from monitor.errors import ConfigError, Problem
from monitor.kpis import Catalog
from monitor.periods import WindowSpec
from monitor.yamlsrc import Located, load_yaml, parse_yaml, problems_from

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              populate_by_name=True)


class TargetSpec(_Strict):
    """A target per label value: ``{by: campaign, values: {brand: 400}, default: 650}``."""

    by: str
    values: dict[str, float]
    default: float | None = None


class BenchmarkSpec(_Strict):
    """An industry or internal benchmark of one KPI, with the context it holds in.

    ``{value: 0.025, context: "e-commerce, RU"}``, or per label value:
    ``{by: channel, values: {google_ads: 0.04, meta: 0.012}, value: 0.02}``
    (``value`` is then the default). Rules compare with ``benchmark(ctr)``.
    """

    value: float | None = None
    by: str | None = None
    values: dict[str, float] = Field(default_factory=dict)
    context: str = Field(default="", description="Where it holds: 'B2B SaaS', 'e-commerce'.")
    source: str = Field(default="", description="Where it comes from, for the reader.")

    @model_validator(mode="after")
    def _some(self) -> BenchmarkSpec:
        if self.value is None and not self.values:
            raise ValueError("give a value, or values per label value with by")
        if self.values and self.by is None:
            raise ValueError("values per label value need by: the label")
        return self


class RuleSpec(_Strict):
    alert: str = Field(pattern=IDENT, description="Alert name; unique across all files.")
    expr: str | None = Field(default=None, description="A condition over KPIs and measures, "
                             "e.g. cpa > 650. Omit it when `tiers` are given.")
    tiers: dict[str, str] = Field(default_factory=dict, description="Severity -> condition, "
                                  "lowest first; each series gets the highest tier it meets.")
    over: str = Field(default="1d", description="7d (complete days), 6h (complete hours), "
                      "today, wtd, mtd or qtd.")
    offset: Duration | None = Field(default=None, description="Move the window back, for "
                                    "late data.")
    by: list[str] = Field(default_factory=list, description="Labels to group by.")
    targets: dict[str, float | TargetSpec] = Field(
        default_factory=dict, description="Named numbers usable in expr; per label value with "
        "{by, values, default}.")
    min_volume: dict[str, float] = Field(default_factory=dict,
                                         description="Minimum sums per measure to evaluate.")
    for_: Duration = Field(default="0s", alias="for")
    keep_firing_for: Duration = Field(default="0s")
    resolve: str | None = Field(default=None, description="Once firing, the alert resolves "
                                "only when this holds (hysteresis), e.g. cpa < 600.")
    no_data: Literal["ok", "keep_state", "alert"] = Field(
        default="ok", description="When a series has no data: resolve it, keep its state, "
        "or alert.")
    on_error: Literal["keep_state", "ok"] = Field(
        default="keep_state", description="When a source the rule reads is failing.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("over")
    @classmethod
    def _over(cls, v: str) -> str:
        WindowSpec.parse(v)
        return v

    @model_validator(mode="after")
    def _expr_or_tiers(self) -> RuleSpec:
        if (self.expr is None) == (not self.tiers):
            raise ValueError("give either expr or tiers")
        if self.tiers and "severity" in self.labels:
            raise ValueError("with tiers, the severity label comes from the tier names")
        WindowSpec.parse(self.over, self.offset)
        return self

    @property
    def window(self) -> WindowSpec:
        return WindowSpec.parse(self.over, self.offset)


class GroupSpec(_Strict):
    name: str
    interval: Duration | None = None
    rules: list[RuleSpec]


class RuleFileSpec(_Strict):
    groups: list[GroupSpec]


@dataclass(frozen=True)
class Rule:
    """A compiled rule (one per severity tier): its spec plus its polars expressions."""

    id: str  # the state key: the alert name, or "Name/severity" for a tier
    spec: RuleSpec
    group: str
    file: str
    window: WindowSpec
    condition: pl.Expr = field(repr=False, compare=False)
    value: pl.Expr = field(repr=False, compare=False)
    # The right side of the first comparison (650, 1.5 * target, 3 * baseline(…)):
    # exported so a board can draw the line the value is compared with.
    threshold: pl.Expr = field(repr=False, compare=False)
    clear: pl.Expr | None = field(repr=False, compare=False)  # the resolve condition
    spans: dict[Span, frozenset[str]] = field(repr=False, compare=False)
    buckets: tuple[BucketStat, ...] = field(repr=False, compare=False)
    kpis: tuple[str, ...]  # KPIs (and measures) named in expr: exported and shown
    annotation_templates: dict[str, jinja2.Template] = field(repr=False, compare=False)
    severity: str | None = None  # the tier

    @property
    def name(self) -> str:
        return self.spec.alert

    @property
    def by(self) -> tuple[str, ...]:
        return tuple(self.spec.by)

    @property
    def labels(self) -> dict[str, str]:
        return {**self.spec.labels, **({"severity": self.severity} if self.severity else {})}

    @property
    def measures(self) -> frozenset[str]:
        """Every raw measure any span or bucket of the rule reads."""
        return frozenset().union(*self.spans.values(), *(b.measures for b in self.buckets),
                                 self.spec.min_volume)


@dataclass(frozen=True)
class Group:
    name: str
    file: str
    interval: timedelta | None
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class RuleSet:
    groups: tuple[Group, ...] = ()
    # Not errors: a rule grouping by a label no configured source has yet simply
    # has no series (the shipped pack covers channels a user may not feed).
    warnings: tuple[Problem, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r for g in self.groups for r in g.rules)

    def rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)

    @property
    def longest_window(self) -> timedelta:
        """How much history any rule reads, windows, shifts and baselines included."""
        return max((lookback(r) for r in self.rules), default=timedelta(days=1))


def lookback(rule: Rule) -> timedelta:
    w = rule.window
    length = w.length if w.form == "trailing" else 92  # a quarter to date at most
    reach = max([length + s.units for s in rule.spans] + [length + b.history
                                                          for b in rule.buckets])
    return (reach + w.offset + 1) * w.unit_span


@dataclass(frozen=True)
class Vocabulary:
    """Names a rule may use: KPIs from the catalog, measures and labels from sources."""

    catalog: Catalog
    measures: frozenset[str]
    labels: frozenset[str] | None = None  # None: not known (no sources configured)
    benchmarks: Mapping[str, BenchmarkSpec] = field(default_factory=dict)


def load_rules(paths: list[Path], vocab: Vocabulary, templates) -> RuleSet:
    """Load and compile every rule file; raise one ConfigError listing every problem."""
    groups: list[Group] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            doc = load_yaml(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        groups.extend(_compile_file(doc, vocab, templates, seen, problems, warnings))
    if problems:
        raise ConfigError(problems)
    return RuleSet(tuple(groups), tuple(warnings))


def compile_text(text: str, name: str, vocab: Vocabulary, templates) -> RuleSet:
    """Compile rules given as text (kpimon's built-in rules); raise ConfigError if invalid."""
    problems: list[Problem] = []
    groups = _compile_file(parse_yaml(text, name), vocab, templates, {}, problems, [])
    if problems:
        raise ConfigError(problems)
    return RuleSet(tuple(groups))


def _compile_file(doc: Located, vocab: Vocabulary, templates, seen: dict[str, str],
                  problems: list[Problem], warnings: list[Problem]) -> list[Group]:
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
            rules.extend(_compile_rule(rule, group.name, doc, loc, vocab, templates, problems))
            _check_labels(rule, doc, loc, vocab, warnings)
        groups.append(Group(group.name, doc.file, group.interval, tuple(rules)))
    return groups


def _compile_rule(spec: RuleSpec, group: str, doc: Located, loc: tuple, vocab: Vocabulary,
                  templates, problems: list[Problem]) -> list[Rule]:
    """Check and compile one rule: one Rule per severity tier (or one without tiers)."""
    before = len(problems)
    texts = {(*loc, "expr"): spec.expr} if spec.expr is not None else {
        (*loc, "tiers", sev): text for sev, text in spec.tiers.items()}
    if spec.resolve is not None:
        texts[(*loc, "resolve")] = spec.resolve
    trees = {}
    targets = _targets(spec, doc, loc, vocab, problems)
    known = vocab.catalog.names | vocab.measures | set(targets)
    for where, text in texts.items():
        try:
            trees[where] = tree = ex.parse(text)
        except ex.ExprError as err:
            problems.append(doc.problem(where, err.message, offset=err.pos))
            continue
        for node in _names(tree):
            if node.name not in known:
                problems.append(doc.problem(where, f"unknown KPI or measure {node.name!r}"
                                            f"{ex.suggest(node.name, known)}", offset=node.pos))
        if not ex.is_condition(tree):
            problems.append(doc.problem(where, "must be a condition, such as 'cpa > 650' or "
                                        "'ctr > 5% and cr < 1%'", offset=0))
    _check_guards(spec, doc, loc, vocab, problems)
    annotations = _annotations(spec, doc, loc, templates, problems)
    if len(problems) > before:
        return []
    compiler = RuleCompiler(vocab.catalog, spec.window, targets, set(vocab.measures),
                            benchmarks=_benchmarks(spec, vocab))
    try:
        compiled = {where: compiler.compile(tree) for where, tree in trees.items()}
        comparison = ex.first_comparison(next(iter(trees.values())))
        value = (compiler.compile(comparison.left) if comparison is not None
                 else pl.lit(None, pl.Float64))
        threshold = (compiler.compile(comparison.right) if comparison is not None
                     else pl.lit(None, pl.Float64))
    except ex.ExprError as err:
        where = next(w for w, t in trees.items() if _contains(t, err.pos))
        problems.append(doc.problem(where, err.message, offset=err.pos))
        return []
    clear = compiled.pop((*loc, "resolve"), None)
    first_tree = next(iter(trees.values()))
    names = tuple(dict.fromkeys(n.name for n in _names(first_tree) if n.name not in targets))
    # The KPIs named are exported over the rule's own window, even inside prev().
    for name in names:
        compiler.spans[WINDOW].update(vocab.catalog.expand(ex.Name(name, 0)))
    common = {
        "spec": spec, "group": group, "file": doc.file, "window": spec.window, "value": value,
        "threshold": threshold,
        "clear": clear, "spans": {k: frozenset(v) for k, v in compiler.spans.items()},
        "buckets": tuple(compiler.buckets), "kpis": names, "annotation_templates": annotations,
    }
    if not spec.tiers:
        return [Rule(id=spec.alert, condition=compiled[(*loc, "expr")], **common)]
    # Tiers are exclusive: a series is in the highest tier whose condition holds.
    conditions = [(sev, compiled[(*loc, "tiers", sev)]) for sev in spec.tiers]
    rules = []
    for i, (sev, cond) in enumerate(conditions):
        higher = [c.fill_null(False) for _, c in conditions[i + 1:]]
        exclusive = cond.fill_null(False) & ~pl.any_horizontal(higher) if higher else cond
        rules.append(Rule(id=f"{spec.alert}/{sev}", condition=exclusive, severity=sev, **common))
    return rules


def _names(tree: ex.Node) -> list[ex.Name]:
    """Names that must be KPIs, measures or targets (not baseline method words)."""
    skip = {id(node.args[2]) for node in ex.walk(tree)
            if isinstance(node, ex.Call) and node.func == "baseline" and len(node.args) == 3}
    return [n for n in ex.walk(tree) if isinstance(n, ex.Name) and id(n) not in skip]


def _contains(tree: ex.Node, pos: int) -> bool:
    return any(getattr(n, "pos", -1) == pos for n in ex.walk(tree))


def _targets(spec: RuleSpec, doc: Located, loc: tuple, vocab: Vocabulary,
             problems: list[Problem]) -> dict[str, pl.Expr]:
    """Targets as columns: a constant, or a lookup by the value of one ``by`` label."""
    out: dict[str, pl.Expr] = {}
    for name, target in spec.targets.items():
        if name in vocab.catalog or name in vocab.measures:
            problems.append(doc.problem((*loc, "targets", name), f"{name!r} is a KPI or "
                                        "measure; give the target another name"))
            continue
        if isinstance(target, float | int):
            out[name] = pl.lit(float(target), pl.Float64)
            continue
        if target.by not in spec.by:
            problems.append(doc.problem((*loc, "targets", name, "by"), f"the rule must group "
                                        f"by {target.by!r} to use a target per {target.by}"))
            continue
        out[name] = pl.col(target.by).replace_strict(
            target.values, default=target.default, return_dtype=pl.Float64)
    return out


def _locale_of(key: str, texts: dict[str, str]) -> str | None:
    """``summary_ru`` renders numbers and words in Russian; ``summary`` next to a
    ``summary_ru`` is the English text; anything else in the configured locale."""
    if key.endswith("_ru"):
        return "ru_RU"
    if f"{key}_ru" in texts:
        return "en_US"
    return None


def _benchmarks(spec: RuleSpec, vocab: Vocabulary) -> dict[str, pl.Expr]:
    """Benchmarks as columns: per the rule's label when it groups by it, else the default."""
    out = {}
    for kpi, bench in vocab.benchmarks.items():
        if bench.by is not None and bench.by in spec.by:
            out[kpi] = pl.col(bench.by).replace_strict(bench.values, default=bench.value,
                                                       return_dtype=pl.Float64)
        else:
            out[kpi] = pl.lit(bench.value, pl.Float64)
    return out


def _check_guards(spec: RuleSpec, doc: Located, loc: tuple, vocab: Vocabulary,
                  problems: list[Problem]) -> None:
    for measure in spec.min_volume:
        if measure not in vocab.measures:
            problems.append(doc.problem((*loc, "min_volume", measure), f"unknown measure "
                                        f"{measure!r}{ex.suggest(measure, vocab.measures)}"))


def _check_labels(spec: RuleSpec, doc: Located, loc: tuple, vocab: Vocabulary,
                  warnings: list[Problem]) -> None:
    if vocab.labels is None:
        return
    for i, label in enumerate(spec.by):
        if label not in vocab.labels:
            warnings.append(doc.problem((*loc, "by", i), f"no source has the label {label!r} "
                                        "yet, so the rule has no series"
                                        f"{ex.suggest(label, vocab.labels)}"))


def _annotations(spec: RuleSpec, doc: Located, loc: tuple, templates,
                 problems: list[Problem]) -> dict[str, jinja2.Template]:
    compiled = {}
    texts = {**spec.annotations, **spec.labels}
    for key, text in texts.items():
        if "{{" not in text and "{%" not in text:
            continue  # plain text: sent as written, no render per alert
        try:
            compiled[key] = templates.compile_string(text, _locale_of(key, texts))
        except jinja2.TemplateSyntaxError as err:
            where = "annotations" if key in spec.annotations else "labels"
            problems.append(doc.problem((*loc, where, key), f"template: {err.message}"))
    return compiled
