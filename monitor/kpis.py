"""The KPI catalog: every KPI is a formula over additive measures.

A KPI is computed as a ratio of sums: measures are summed over the window and the
group first, then the formula is applied (sum(cost) / sum(conversions)), never as
an average of daily ratios. Formulas use the rule expression language, so a
custom KPI in the config is written exactly like a built-in one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import polars as pl

from monitor import expr as ex


class Unit(StrEnum):
    RATIO = "ratio"  # 0..1, shown as a percent
    MONEY = "money"  # in global.currency
    NUMBER = "number"  # a plain number (ROAS 3.2, position 4.1)
    COUNT = "count"  # an additive count
    SECONDS = "seconds"


class Better(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


class Level(StrEnum):
    """The KPI pyramid."""

    BUSINESS = "business"
    MARKETING = "marketing"
    TACTICAL = "tactical"


@dataclass(frozen=True)
class KPI:
    name: str
    formula: str
    unit: Unit
    better: Better
    level: Level
    title: str
    title_ru: str
    tree: ex.Node = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tree", ex.parse(self.formula))

    @property
    def measures(self) -> frozenset[str]:
        return frozenset(n.name for n in ex.walk(self.tree) if isinstance(n, ex.Name))


def _k(name, formula, unit, better, level, title, title_ru) -> KPI:
    return KPI(name, formula, Unit(unit), Better(better), Level(level), title, title_ru)


BUILTIN: tuple[KPI, ...] = (
    # paid digital
    _k("ctr", "clicks / impressions", "ratio", "higher", "tactical", "CTR", "CTR"),
    _k("cpc", "cost / clicks", "money", "lower", "tactical", "CPC", "CPC"),
    _k("cpm", "cost / impressions * 1000", "money", "lower", "tactical", "CPM", "CPM"),
    _k("cr", "conversions / clicks", "ratio", "higher", "marketing", "Conversion rate",
       "Конверсия"),
    _k("cpa", "cost / conversions", "money", "lower", "marketing", "CPA", "CPA"),
    _k("roas", "revenue / cost", "number", "higher", "business", "ROAS", "ROAS"),
    _k("roi", "(revenue - cost) / cost", "ratio", "higher", "business", "ROI", "ROI"),
    _k("cpl", "cost / leads", "money", "lower", "marketing", "CPL", "CPL"),
    _k("cac", "cost / new_customers", "money", "lower", "business", "CAC", "CAC"),
    _k("ltv", "customer_revenue / customers", "money", "higher", "business", "LTV", "LTV"),
    _k("lead_to_sale", "sales / leads", "ratio", "higher", "marketing", "Lead-to-sale rate",
       "Конверсия лида в продажу"),
    # email
    _k("open_rate", "opens / delivered", "ratio", "higher", "tactical", "Open rate",
       "Открываемость"),
    _k("click_rate", "clicks / delivered", "ratio", "higher", "tactical", "Click rate",
       "Кликабельность"),
    _k("unsubscribe_rate", "unsubscribes / delivered", "ratio", "lower", "tactical",
       "Unsubscribe rate", "Доля отписок"),
    _k("email_conversion", "conversions / delivered", "ratio", "higher", "marketing",
       "Email conversion", "Конверсия рассылки"),
    # content and SMM
    _k("engagement_rate", "(likes + comments + shares) / followers * 1000", "number", "higher",
       "tactical", "Engagement per 1000 followers", "Вовлечённость на 1000 подписчиков"),
    _k("avg_time_on_page", "time_on_page_seconds / sessions", "seconds", "higher", "tactical",
       "Average time on page", "Среднее время на странице"),
    # SEO
    _k("bounce_rate", "bounces / sessions", "ratio", "lower", "tactical", "Bounce rate",
       "Показатель отказов"),
    _k("avg_position", "position_weighted / search_impressions", "number", "lower",
       "tactical", "Average position", "Средняя позиция"),
    _k("pages_per_session", "pageviews / sessions", "number", "higher", "tactical",
       "Pages per session", "Глубина просмотра"),
    # offline
    _k("promo_activation_rate", "promo_activations / promo_codes_issued", "ratio", "higher",
       "marketing", "Promo code activation rate", "Доля активированных промокодов"),
    _k("event_lead_rate", "event_leads / event_visitors", "ratio", "higher", "marketing",
       "Leads per event visitor", "Лиды на посетителя мероприятия"),
    # product
    _k("retention_d7", "retained_d7 / cohort_users", "ratio", "higher", "business",
       "D7 retention", "Удержание D7"),
    _k("retention_d30", "retained_d30 / cohort_users", "ratio", "higher", "business",
       "D30 retention", "Удержание D30"),
)


# Measures people read as numbers of their own: unit and titles (English, Russian).
MEASURE_INFO: dict[str, tuple[Unit, str, str]] = {
    "cost": (Unit.MONEY, "Spend", "Расход"),
    "revenue": (Unit.MONEY, "Revenue", "Выручка"),
    "conversions": (Unit.COUNT, "Conversions", "Конверсии"),
    "leads": (Unit.COUNT, "Leads", "Лиды"),
    "impressions": (Unit.COUNT, "Impressions", "Показы"),
    "clicks": (Unit.COUNT, "Clicks", "Клики"),
    "visits": (Unit.COUNT, "Visits", "Визиты"),
    "delivered": (Unit.COUNT, "Emails delivered", "Доставлено писем"),
    "opens": (Unit.COUNT, "Opens", "Открытия"),
    "unsubscribes": (Unit.COUNT, "Unsubscribes", "Отписки"),
    "new_customers": (Unit.COUNT, "New customers", "Новые клиенты"),
}


class Catalog:
    """The KPIs known to one configuration: the built-ins plus the user's own."""

    def __init__(self, kpis: Iterable[KPI] = BUILTIN):
        self._kpis: dict[str, KPI] = {k.name: k for k in kpis}

    def with_custom(self, custom: Iterable[KPI]) -> Catalog:
        return Catalog([*self._kpis.values(), *custom])

    def __contains__(self, name: object) -> bool:
        return name in self._kpis

    def __getitem__(self, name: str) -> KPI:
        return self._kpis[name]

    def __iter__(self):
        return iter(self._kpis.values())

    @property
    def names(self) -> set[str]:
        return set(self._kpis)

    @property
    def measures(self) -> set[str]:
        """Every measure any KPI in the catalog is built from."""
        return set().union(*(k.measures for k in self._kpis.values()))

    def unit_of(self, name: str) -> Unit:
        """A KPI's unit, or a measure's (money for cost and revenue, else a count)."""
        if name in self._kpis:
            return self._kpis[name].unit
        return MEASURE_INFO[name][0] if name in MEASURE_INFO else Unit.COUNT

    def title_of(self, name: str, russian: bool = False) -> str:
        if name in self._kpis:
            k = self._kpis[name]
            return (k.title_ru if russian else k.title) or name
        if name in MEASURE_INFO:
            return MEASURE_INFO[name][2 if russian else 1]
        return name

    def expand(self, node: ex.Node, seen: tuple[str, ...] = ()) -> set[str]:
        """The raw measures an expression needs once KPIs are expanded to formulas."""
        out: set[str] = set()
        for n in ex.walk(node):
            if isinstance(n, ex.Name):
                if n.name in self._kpis and n.name not in seen:
                    out |= self.expand(self._kpis[n.name].tree, (*seen, n.name))
                else:
                    out.add(n.name)
        return out

    def column(self, name: str, measure_cols: Mapping[str, pl.Expr] | None = None) -> pl.Expr:
        """A KPI or measure as a polars expression over summed measure columns."""
        def resolve(node: ex.Name) -> pl.Expr:
            if node.name in self._kpis and node.name != name:
                return self.column(node.name, measure_cols)
            if measure_cols is not None and node.name in measure_cols:
                return measure_cols[node.name]
            return pl.col(node.name)

        if name in self._kpis:
            return ex.compile_expr(self._kpis[name].tree, resolve)
        return resolve(ex.Name(name, 0))
