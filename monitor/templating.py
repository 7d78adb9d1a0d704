"""Jinja2 templates for annotations and notifications, with locale-aware filters.

A sandboxed environment with StrictUndefined: a typo in a template is an error
at load time (``kpimon check``), not a silent blank in a page at 3 a.m. Number
filters use Babel and the configured locale, so Russian readers see "2,3 %"
and "650 ₽", English readers "2.3%" and "RUB 650".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale
from babel.dates import format_timedelta
from babel.numbers import get_currency_symbol, parse_pattern
from jinja2.sandbox import ImmutableSandboxedEnvironment

from monitor.kpis import Catalog, Unit

MISSING = "—"


class Formatter:
    """Number formats for one locale and currency; every method accepts None."""

    def __init__(self, locale: str = "ru_RU", currency: str = "RUB"):
        self.locale, self.currency = Locale.parse(locale), currency

    def number(self, value: float | None, digits: int = 2) -> str:
        if not _finite(value):
            return MISSING
        pattern = "#,##0" + ("." + "#" * digits if digits else "")
        return _pattern(pattern).apply(value, self.locale)

    def percent(self, value: float | None, digits: int = 1) -> str:
        """A ratio (0.023) as a percent in the locale's own pattern: "2,3 %" / "2.3%"."""
        if not _finite(value):
            return MISSING
        pattern = self.locale.percent_formats[None].pattern
        if digits:
            pattern = re.sub(r"0(?=[^0]*$)", "0." + "0" * digits, pattern, count=1)
        return _pattern(pattern).apply(value, self.locale)

    def money(self, value: float | None, currency: str | None = None) -> str:
        """Whole units from 100 up ("650 ₽"), kopecks below ("12,40 ₽")."""
        if not _finite(value):
            return MISSING
        pattern = self.locale.currency_formats["standard"].pattern.split(";")[0]
        if abs(value) >= 100:
            pattern = pattern.replace(".00", "")
        code = currency or self.currency
        symbol = get_currency_symbol(code, self.locale)
        if symbol.isalpha():
            pattern = pattern.replace("¤#", "¤\u00a0#")  # "RUB 650", not "RUB650"
        # The symbol goes into the pattern as literal text: Babel's own currency
        # step looks up plural currency names on every call, which costs more than
        # the rest of the formatting.
        literal = "'" + symbol.replace("'", "''") + "'"
        return _pattern(pattern.replace("¤", literal)).apply(value, self.locale)

    def points(self, delta: float | None, digits: int = 1) -> str:
        """A difference of two ratios in percentage points: -0.008 -> "-0,8 п. п."."""
        if not _finite(delta):
            return MISSING
        unit = "п. п." if self.locale.language == "ru" else "pp"
        sign = "+" if delta > 0 else ""
        return f"{sign}{self.number(delta * 100, digits)}\u00a0{unit}"

    def change(self, ratio: float | None, digits: int = 0) -> str:
        """A relative change: 0.42 -> "+42 %"."""
        if not _finite(ratio):
            return MISSING
        return ("+" if ratio > 0 else "") + self.percent(ratio, digits)

    def plan_fact(self, value: float | None, target: float | None, unit: Unit | str) -> str:
        """Fact against plan, the gap in percentage points for ratios and in percent
        otherwise: "3,2 % при плане 4 %: на 0,8 п. п. ниже плана"."""
        if not (_finite(value) and _finite(target)):
            return MISSING
        unit = Unit(unit)
        ru = self.locale.language == "ru"
        fact, plan = self.kpi(value, unit), self.kpi(target, unit)
        if value == target:
            return f"{fact} — точно по плану" if ru else f"{fact}: exactly on plan"
        if unit is Unit.RATIO:
            gap = self.points(abs(value - target)).lstrip("+")
        elif target:
            gap = self.percent(abs(value / target - 1), 0)
        else:
            gap = self.kpi(abs(value - target), unit)
        above = value > target
        if ru:
            return f"{fact} при плане {plan}: на {gap} {'выше' if above else 'ниже'} плана"
        return f"{fact} against a plan of {plan}: {gap} {'above' if above else 'below'} plan"

    def duration(self, value: timedelta | float | None) -> str:
        if value is None:
            return MISSING
        td = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
        return format_timedelta(td, locale=self.locale, threshold=1.1)

    def kpi(self, value: float | None, unit: Unit | str) -> str:
        """Format by the KPI's unit: ratios as percent, money in the currency."""
        unit = Unit(unit)
        if unit is Unit.RATIO:
            return self.percent(value, 2 if _finite(value) and abs(value) < 0.01 else 1)
        if unit is Unit.MONEY:
            return self.money(value)
        if unit is Unit.COUNT:
            return self.number(value, 0)
        if unit is Unit.SECONDS:
            return self.duration(value)
        return self.number(value, 2)


# Babel parses a pattern on every call; alerts format thousands of numbers a cycle.
_pattern = lru_cache(maxsize=256)(parse_pattern)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _localized_note(lang: str) -> Callable[[dict[str, Any], str], str]:
    """``note(alert, "summary")``: the annotation in the reader's language if the rule has it."""
    def note(alert: dict[str, Any], key: str, default: str = "") -> str:
        annotations = alert.get("annotations", {})
        return annotations.get(f"{key}_{lang}", annotations.get(key, default))
    return note


def slack_escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Templates:
    """Template environments per locale over the user's folders, then the built-ins."""

    def __init__(self, folders: list[Path], catalog: Catalog, currency: str = "RUB",
                 default_locale: str = "ru_RU", extra_globals: dict[str, Any] | None = None):
        self.folders = [str(f) for f in folders]
        self.catalog, self.currency, self.default_locale = catalog, currency, default_locale
        self.extra_globals = {"external_url": "", "grafana_url": "", **(extra_globals or {})}
        self._env = cache(self._make_env)

    def env(self, locale: str | None = None) -> jinja2.Environment:
        return self._env(locale or self.default_locale)

    def _make_env(self, locale: str) -> jinja2.Environment:
        fmt = Formatter(locale, self.currency)
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(self.folders),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html", "htm", "html.j2"]),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        filters: dict[str, Callable[..., str]] = {
            "money": fmt.money, "percent": fmt.percent, "number": fmt.number,
            "points": fmt.points, "change": fmt.change, "duration": fmt.duration,
            "plan_fact": lambda v, target, name: fmt.plan_fact(v, target, self._unit(name)),
            "slack_escape": slack_escape,
            "kpi": lambda v, name: fmt.kpi(v, self._unit(name)),
        }
        env.filters.update(filters)
        lang = Locale.parse(locale).language
        env.globals.update(self.extra_globals, locale=locale, lang=lang,
                           kpi_title=self._title(locale), note=_localized_note(lang))
        return env

    def _unit(self, name: str) -> Unit:
        """A KPI's unit; a measure's (money for cost and revenue, else a count)."""
        return self.catalog.unit_of(name)

    def _title(self, locale: str) -> Callable[[str], str]:
        russian = Locale.parse(locale).language == "ru"

        def title(name: str) -> str:
            return self.catalog.title_of(name, russian)
        return title

    def localized_name(self, name: str, locale: str | None) -> str:
        """``slack.md.j2`` -> ``slack.ru.md.j2`` when that exists for the locale."""
        lang = Locale.parse(locale or self.default_locale).language
        stem, dot, rest = name.partition(".")
        candidate = f"{stem}.{lang}.{rest}" if dot else f"{name}.{lang}"
        try:
            self.env(locale).get_template(candidate)
            return candidate
        except jinja2.TemplateNotFound:
            return name

    def render(self, name: str, context: dict[str, Any], locale: str | None = None) -> str:
        env = self.env(locale)
        return env.get_template(self.localized_name(name, locale)).render(context)

    def compile_string(self, text: str, locale: str | None = None) -> jinja2.Template:
        return self.env(locale).from_string(text)
