"""Building a runnable setup from a loaded config: catalog, templates, rules, plugins.

Pure construction, no I/O beyond reading rule and template files, so ``check``,
``eval`` and the daemon build exactly the same thing. Every problem across the
config, the rule files and the templates is reported together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from monitor.config import LoadedConfig
from monitor.errors import ConfigError, Problem, SourceError
from monitor.expr import suggest
from monitor.kpis import KPI, Better, Catalog, Level, Unit
from monitor.rendering import NotificationRenderer
from monitor.resources import expand_rule_globs, templates_dir
from monitor.rulefile import RuleSet, Vocabulary, load_rules
from monitor.sources import SOURCE_TYPES
from monitor.templating import Templates
from notifiers import NOTIFIER_TYPES
from notifiers.base import Notification


@dataclass(frozen=True)
class Runtime:
    loaded: LoadedConfig
    catalog: Catalog
    templates: Templates
    renderer: NotificationRenderer
    rules: RuleSet
    sources: dict[str, object]
    notifiers: dict[str, object]

    @property
    def config(self):
        return self.loaded.config

    @property
    def silences(self) -> list:
        """The silences kept in the config (the store holds the ad hoc ones)."""
        from monitor.silences import from_config

        return from_config(self.config.silences)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.global_.timezone)

    @property
    def history(self) -> timedelta:
        """How far back the window must reach: the rules' longest window and the goals'."""
        goal_days = {"week": 7, "month": 31, "quarter": 92, "year": 366}
        spans = [timedelta(days=goal_days.get(g.period or "", 0)) for g in self.config.goals]
        return max([self.rules.longest_window, *spans])


def build_catalog(loaded: LoadedConfig) -> Catalog:
    problems = []
    custom = []
    for i, k in enumerate(loaded.config.kpis):
        try:
            custom.append(KPI(k.name, k.formula, Unit(k.unit), Better(k.better), Level(k.level),
                              k.title or k.name, k.title_ru or k.title or k.name))
        except Exception as exc:  # ExprError: point at the formula
            problems.append(loaded.doc.problem(("kpis", i, "formula"), str(exc),
                                               offset=getattr(exc, "pos", None)))
    if problems:
        raise ConfigError(problems)
    return Catalog().with_custom(custom)


def build_sources(loaded: LoadedConfig, clock=None) -> dict[str, object]:
    tz = loaded.config.global_.timezone
    out, problems = {}, []
    for i, cfg in enumerate(loaded.config.sources):
        cls = SOURCE_TYPES[cfg.type]
        kwargs: dict[str, object] = {"timezone": tz}
        if cfg.type == "demo":
            if clock is not None:
                kwargs["clock"] = clock
        else:
            kwargs["base_dir"] = loaded.base_dir
        try:
            out[cfg.name] = cls(cfg, **kwargs)
        except SourceError as exc:
            problems.append(loaded.doc.problem(("sources", i), str(exc)))
    if problems:
        raise ConfigError(problems)
    return out


def build(loaded: LoadedConfig, clock=None) -> Runtime:
    cfg = loaded.config
    catalog = build_catalog(loaded)
    folders = template_folders(loaded)
    links = {"external_url": cfg.global_.external_url, "grafana_url": cfg.global_.grafana_url}
    templates = Templates(folders, catalog, cfg.global_.currency, cfg.global_.locale, links)
    renderer = NotificationRenderer(templates, links)
    sources = build_sources(loaded, clock)
    measures = frozenset(catalog.measures).union(*(s.measures for s in sources.values()))
    labels = frozenset().union(*(s.dimensions for s in sources.values())) if sources else None
    rule_paths = expand_rule_globs(cfg.rule_files, loaded.base_dir)
    problems: list[Problem] = []
    for i, pattern in enumerate(cfg.rule_files):
        if not expand_rule_globs([pattern], loaded.base_dir):
            problems.append(loaded.doc.problem(("rule_files", i), f"no rule file matches "
                                               f"{pattern!r}"))
    rules = RuleSet()
    try:
        rules = load_rules(rule_paths, Vocabulary(catalog, measures, labels, cfg.benchmarks),
                           templates)
    except ConfigError as exc:
        problems.extend(exc.problems)
    notifiers = {}
    for i, rc in enumerate(cfg.receivers):
        notifiers[rc.name] = NOTIFIER_TYPES[rc.type](rc, renderer)
        problems.extend(_check_template(loaded, templates, rc, i))
    for i, funnel in enumerate(cfg.funnels):
        for j, stage in enumerate(funnel.stages):
            if stage not in measures:
                problems.append(loaded.doc.problem(("funnels", i, "stages", j), (
                    f"unknown measure {stage!r}{suggest(stage, measures)}: funnel stages "
                    "are additive measures")))
    for kpi in cfg.benchmarks:
        if kpi not in catalog:
            problems.append(loaded.doc.problem(("benchmarks", kpi), f"unknown KPI {kpi!r}"
                                               f"{suggest(kpi, catalog.names)}"))
    known = catalog.names | measures
    for i, goal in enumerate(cfg.goals):
        for where, name in [(("goals", i, "kpi"), goal.kpi), *(
                (("goals", i, "supporting", j), n) for j, n in enumerate(goal.supporting))]:
            if name not in known:
                problems.append(loaded.doc.problem(where, f"unknown KPI or measure {name!r}"
                                                   f"{suggest(name, known)}"))
    if cfg.server.web_config_file:
        from monitor.webconfig import load_web_config

        try:
            load_web_config(loaded.resolve(cfg.server.web_config_file))
        except ConfigError as exc:
            problems.extend(exc.problems)
    runtime = Runtime(loaded, catalog, templates, renderer, rules, sources, notifiers)
    retention = cfg.store.retention
    if retention is not None and retention < runtime.history:
        problems.append(loaded.doc.problem(("store", "retention"), (
            f"retention {retention.days}d is shorter than the {runtime.history.days} days "
            "the rules and goals read")))
    if problems:
        raise ConfigError(problems)
    return runtime


SAMPLE = Notification(
    receiver="sample", status="firing", group_labels={"alertname": "CPAAboveTarget"},
    alerts=({
        "status": "firing", "labels": {"alertname": "CPAAboveTarget", "channel": "google_ads",
                                       "campaign": "brand", "severity": "warning"},
        "annotations": {"summary": "CPA above target", "description": "sample",
                        "next_step": "check bids"},
        "value": 712.5, "values": {"cpa": 712.5}, "kpi": "cpa", "unit": "money",
        "window": "7d", "group": "sample", "startsAt": "2026-01-01T00:00:00+00:00",
        "firedAt": "2026-01-01T00:10:00+00:00", "endsAt": None, "generatorURL": "",
    },),
)


def _check_template(loaded: LoadedConfig, templates: Templates, rc, index: int) -> list[Problem]:
    """Compile and render a receiver's template against a sample alert, in both statuses."""
    names = [n for n in (getattr(rc, a, None) for a in (
        "template", "subject_template", "text_template", "html_template")) if n]
    return [p for name in names for p in _check_one(loaded, templates, rc, index, name)]


def _check_one(loaded: LoadedConfig, templates: Templates, rc, index: int,
               name: str) -> list[Problem]:
    out = []
    for status in ("firing", "resolved"):
        sample = Notification(SAMPLE.receiver, status, SAMPLE.alerts, SAMPLE.group_labels)
        try:
            templates.render(name, NotificationRenderer(templates).context(sample), rc.locale)
        except jinja2.TemplateNotFound:
            return [loaded.doc.problem(("receivers", index, "template"),
                                       f"template {name!r} not found")]
        except jinja2.TemplateError as exc:
            file = getattr(exc, "filename", None) or name
            line = getattr(exc, "lineno", None) or 1
            out.append(Problem(str(file), line, 1, f"receivers[{index}].template",
                               f"template error ({status}): {exc}"))
            break
    return out


def template_folders(loaded: LoadedConfig) -> list[Path]:
    return [loaded.resolve(p) for p in loaded.config.templates] + [templates_dir()]
