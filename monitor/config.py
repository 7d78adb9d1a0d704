"""The daemon's configuration file, as strict pydantic models.

Unknown keys are errors that name their path; every error in the file is
reported at once as ``file:line:col: path: message``. Source and receiver
sections are tagged unions built from the plugin registries, so a new plugin is
one entry in one dict. The loaded config is frozen: nothing mutates it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.cron import check_cron
from monitor.durations import Duration
from monitor.funnels import FunnelSpec
from monitor.goals import GoalSpec
from monitor.rulefile import BenchmarkSpec
from monitor.sources import SOURCE_TYPES
from monitor.timeintervals import TimeInterval
from monitor.yamlsrc import Located, load_yaml, validate
from notifiers import NOTIFIER_TYPES


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GlobalConfig(Strict):
    timezone: str = Field(default="UTC", description="Day boundaries of windows follow it.")
    currency: str = Field(default="RUB", pattern=r"^[A-Z]{3}$")
    locale: str = Field(default="ru_RU", description="Number and currency format of messages.")
    evaluation_interval: Duration = Field(default="1m")
    external_url: str = Field(default="", description="Base URL for links in messages.")
    grafana_url: str = Field(default="", description="Board link template for messages.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {v!r} (use an IANA name like Europe/Moscow)") from None
        return v

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        try:
            Locale.parse(v)
        except (UnknownLocaleError, ValueError):
            raise ValueError(f"unknown locale {v!r} (use a name like ru_RU or en_US)") from None
        return v


class StoreConfig(Strict):
    url: str = Field(default="sqlite:///var/kpimon.db",
                     description="SQLAlchemy URL; relative SQLite paths are resolved "
                                 "against the config file's folder. PostgreSQL: "
                                 "postgresql+psycopg://kpimon:${PGPASSWORD}@host/kpimon")
    retention: Duration | None = Field(default="400d", description="Observations older than "
                                       "this are deleted; null keeps everything.")
    rollup_after: Duration | None = Field(default=None, description="Hourly rows older than "
                                          "this are summed into one row per local day.")


class ServerConfig(Strict):
    listen: str = Field(default="127.0.0.1:8464", pattern=r"^(\[[0-9a-fA-F:]+\]|[^:]*):\d+$",
                        description="host:port of the HTTP server; loopback by default.")
    max_series_per_rule: int = Field(default=100_000, gt=0, description="Cardinality guard: "
                                     "KPI series exported per rule at most.")
    max_series: int = Field(default=1_000_000, gt=0, description="KPI series exported at "
                            "most in total.")
    web_config_file: str | None = Field(default=None, description="TLS and basic auth in the "
                                        "exporter-toolkit web.yml format.")

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class KpiDef(Strict):
    """A custom KPI: a formula over measures (or other KPIs), ratio of sums."""

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    formula: str
    unit: Literal["ratio", "money", "number", "count", "seconds"] = "number"
    better: Literal["higher", "lower"] = "higher"
    level: Literal["business", "marketing", "tactical"] = "tactical"
    title: str = ""
    title_ru: str = ""


_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


class Matcher(Strict):
    """``name op "value"`` as Alertmanager writes it; op is =, !=, =~ or !~."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = _MATCHER.match(data)
            if not m:
                raise ValueError(f'invalid matcher {data!r}: use label="value", '
                                 'label!="value", label=~"regex" or label!~"regex"')
            return {"name": m.group(1), "op": m.group(2), "value": m.group(3)}
        return data

    @model_validator(mode="after")
    def _regex(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from None
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        full = re.fullmatch(self.value, value) is not None
        return full if self.op == "=~" else not full


class Route(Strict):
    """A node of the route tree; unset timing and grouping are inherited from the parent."""

    receiver: str | None = None
    matchers: list[Matcher] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = Field(default=None, description="How long a new group "
                                        "waits for more alerts before its first message "
                                        "(root default 0s).")
    group_interval: Duration | None = Field(default=None, description="How long after a "
                                            "group's message the next one may go (root "
                                            "default 1m).")
    repeat_interval: Duration | None = None
    mute_time_intervals: list[str] = Field(default_factory=list, description="Named time "
                                           "intervals when this route is silent; messages are "
                                           "held until they end.")
    active_time_intervals: list[str] = Field(default_factory=list, description="Named time "
                                             "intervals outside which this route is silent.")
    digest: str | None = Field(default=None, description="A cron expression: collect this "
                               "route's alerts into one message sent at those times.")
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)

    _cron = field_validator("digest")(check_cron)


class ReportSpec(Strict):
    """A scheduled report: the last week (operational) or month (strategic) for one owner."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    period: Literal["last-week", "last-month"] = "last-week"
    schedule: str | None = Field(default=None, description="Cron in global.timezone; Monday "
                                 "09:00 for weekly, the 1st at 09:00 for monthly reports.")
    owner: str | None = Field(default=None, description="Only this owner's goals and funnels.")
    receivers: list[str] = Field(min_length=1, description="email gets the HTML with charts; "
                                 "slack, telegram and log get the summary.")
    locale: str | None = None

    _cron = field_validator("schedule")(check_cron)

    @property
    def cron(self) -> str:
        return self.schedule or ("0 9 * * 1" if self.period == "last-week" else "0 9 1 * *")


class SilenceSpec(Strict):
    """A silence kept in git: alerts matching every matcher are not notified meanwhile."""

    matchers: list[Matcher] = Field(min_length=1)
    starts_at: datetime | None = Field(default=None, description="ISO 8601 with an offset; "
                                       "from the start when omitted.")
    ends_at: datetime
    comment: str = ""
    created_by: str = ""

    @model_validator(mode="after")
    def _order(self) -> SilenceSpec:
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at.tzinfo is None:
            raise ValueError("ends_at needs a time zone offset, e.g. 2026-03-14T09:00:00+03:00")
        return self


class InhibitRule(Strict):
    """Alertmanager's inhibition: a firing source alert mutes matching target alerts
    that share the ``equal`` labels (a critical CPA alert mutes the warning for the
    same campaign; a source alert mutes that source's KPI alerts)."""

    source_matchers: list[Matcher] = Field(min_length=1)
    target_matchers: list[Matcher] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    def mutes(self, target: dict[str, str], source: dict[str, str]) -> bool:
        return (all(m.matches(target) for m in self.target_matchers)
                and all(m.matches(source) for m in self.source_matchers)
                and all(target.get(k, "") == source.get(k, "") for k in self.equal)
                # An alert matching both sides cannot inhibit itself.
                and target != source)


def _tagged(registry: dict[str, type]) -> Any:
    models = [cls.config_model for cls in registry.values()]
    return Annotated[reduce(or_, models), Field(discriminator="type")]


SourceSection = _tagged(SOURCE_TYPES)
ReceiverSection = _tagged(NOTIFIER_TYPES)


class Config(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    store: StoreConfig = Field(default_factory=StoreConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sources: list[SourceSection] = Field(default_factory=list)  # type: ignore[valid-type]
    rule_files: list[str] = Field(default_factory=lambda: ["builtin:*.yaml"])
    kpis: list[KpiDef] = Field(default_factory=list)
    receivers: list[ReceiverSection] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [{"type": "log", "name": "log"}])
    route: Route = Field(default_factory=lambda: Route(receiver="log"))
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list, description="Extra template folders, "
                                 "searched before the built-in ones.")
    goals: list[GoalSpec] = Field(default_factory=list, description="Goals with targets and "
                                  "periods; their pace is exported for boards.")
    reports: list[ReportSpec] = Field(default_factory=list, description="Scheduled weekly "
                                      "and monthly reports.")
    funnels: list[FunnelSpec] = Field(default_factory=list, description="Ordered stages "
                                      "per channel; the FunnelBottleneck alert names the step "
                                      "that fell most and why.")
    benchmarks: dict[str, BenchmarkSpec] = Field(default_factory=dict, description="KPI -> "
                                                 "an industry or internal benchmark with its "
                                                 "context; rules use benchmark(kpi).")
    time_intervals: list[TimeInterval] = Field(default_factory=list, description="Named "
                                               "times for routes to mute or be active in.")
    silences: list[SilenceSpec] = Field(default_factory=list, description="Silences kept in "
                                        "git; ad hoc ones go through the API or CLI.")

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [r.name for r in self.receivers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"receiver names must be unique: {', '.join(sorted(dup))}")
        srcs = [s.name for s in self.sources]
        dup = {n for n in srcs if srcs.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique: {', '.join(sorted(dup))}")
        if self.route.receiver is None:
            raise ValueError("route.receiver: the root route needs a receiver")
        for receiver in _route_receivers(self.route):
            if receiver not in names:
                raise ValueError(f"route names receiver {receiver!r}, which is not defined "
                                 f"(defined: {', '.join(names)})")
        for report in self.reports:
            for receiver in report.receivers:
                if receiver not in names:
                    raise ValueError(f"report {report.name!r} names receiver {receiver!r}, "
                                     "which is not defined")
                kind = next(r.type for r in self.receivers if r.name == receiver)
                if not hasattr(NOTIFIER_TYPES[kind], "send_report"):
                    raise ValueError(f"report {report.name!r}: a {kind} receiver cannot take "
                                     "reports (use email, slack, telegram or log)")
        intervals = {i.name for i in self.time_intervals}
        for name in _route_intervals(self.route):
            if name not in intervals:
                raise ValueError(f"route names time interval {name!r}, which is not defined "
                                 f"(defined: {', '.join(sorted(intervals)) or 'none'})")
        return self

    def interval(self, name: str) -> TimeInterval:
        return next(i for i in self.time_intervals if i.name == name)

    @property
    def repeat_interval(self) -> timedelta:
        return self.route.repeat_interval or timedelta(hours=4)


def _route_intervals(route: Route) -> list[str]:
    own = [*route.mute_time_intervals, *route.active_time_intervals]
    return own + [n for child in route.routes for n in _route_intervals(child)]


def _route_receivers(route: Route) -> list[str]:
    own = [route.receiver] if route.receiver else []
    return own + [r for child in route.routes for r in _route_receivers(child)]


class LoadedConfig:
    """A validated config with the file it came from (for relative paths)."""

    def __init__(self, config: Config, path: Path, doc: Located):
        self.config, self.path, self.doc = config, path, doc

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p


def load_config(path: str | Path, env: dict[str, str] | None = None) -> LoadedConfig:
    doc = load_yaml(path, env)
    config = validate(doc, Config.model_validate)
    return LoadedConfig(config, Path(path).resolve(), doc)
