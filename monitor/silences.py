"""Silences: alerts matching every matcher are not notified between start and end.

Two kinds, one behaviour: silences kept in git (``silences:`` in the config,
read-only, identified by a hash of their content) and ad hoc ones created
through ``POST /api/v1/silences`` or ``kpimon silence add``, persisted in the
store so a restart keeps them. Expiring a silence sets its end to now; an
expired silence stops applying and is listed as ``expired``. A silenced alert
is not marked notified, so it is notified once the silence ends if it still
fires, as in Alertmanager.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from monitor.config import Matcher, SilenceSpec
from monitor.errors import KpimonError
from monitor.store import Store, from_micros, silences, to_micros

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class SilenceError(KpimonError):
    """A silence request is invalid or names a silence that does not exist."""

    exit_code = 2


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    origin: str  # "config" or "api"

    def state(self, now: datetime) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: dict[str, str], now: datetime) -> bool:
        return self.state(now) == "active" and all(m.matches(labels) for m in self.matchers)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {"id": self.id, "matchers": [matcher_text(m) for m in self.matchers],
                "startsAt": self.starts_at.isoformat(), "endsAt": self.ends_at.isoformat(),
                "createdBy": self.created_by, "comment": self.comment, "origin": self.origin,
                "status": {"state": self.state(now)}}


def matcher_text(m: Matcher) -> str:
    return f'{m.name}{m.op}"{m.value}"'


def from_config(specs: Sequence[SilenceSpec]) -> list[Silence]:
    out = []
    for spec in specs:
        key = json.dumps([[matcher_text(m) for m in spec.matchers], str(spec.starts_at),
                          str(spec.ends_at)])
        out.append(Silence("cfg-" + hashlib.sha256(key.encode()).hexdigest()[:12],
                           tuple(spec.matchers), spec.starts_at or BEGINNING, spec.ends_at,
                           spec.created_by, spec.comment, "config"))
    return out


def stored(store: Store) -> list[Silence]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(silences).order_by(silences.c.starts_at)).all()
    return [Silence(r.id, tuple(Matcher.model_validate(m) for m in json.loads(r.matchers)),
                    from_micros(r.starts_at), from_micros(r.ends_at), r.created_by, r.comment,
                    "api") for r in rows]


def parse_request(body: dict[str, Any], now: datetime) -> Silence:
    """A silence from an API request (Alertmanager's field names)."""
    if not isinstance(body, dict):
        raise SilenceError("the body must be a JSON object")
    try:
        matchers = tuple(Matcher.model_validate(m) for m in body.get("matchers") or [])
    except ValidationError as exc:
        raise SilenceError(f"matchers: {exc.errors()[0]['msg']}") from None
    if not matchers:
        raise SilenceError('matchers: at least one, e.g. ["campaign=\\"brand\\""]')
    try:
        starts = _time(body.get("startsAt")) or now
        ends = _time(body.get("endsAt"))
    except ValueError as exc:
        raise SilenceError(str(exc)) from None
    if ends is None or ends <= starts:
        raise SilenceError("endsAt is required and must be after startsAt")
    if not str(body.get("createdBy", "")).strip():
        raise SilenceError("createdBy is required: who silences, for the audit trail")
    return Silence(body.get("id") or str(uuid.uuid4()), matchers, starts, ends,
                   str(body["createdBy"]), str(body.get("comment", "")), "api")


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{value!r} needs a time zone offset")
    return t


def save(store: Store, silence: Silence, now: datetime) -> None:
    row = {"matchers": json.dumps([matcher_text(m) for m in silence.matchers]),
           "starts_at": to_micros(silence.starts_at), "ends_at": to_micros(silence.ends_at),
           "created_by": silence.created_by, "comment": silence.comment,
           "updated_at": to_micros(now)}
    with store.transaction() as c:
        updated = c.execute(sa.update(silences).where(silences.c.id == silence.id).values(**row))
        if not updated.rowcount:
            c.execute(sa.insert(silences).values(id=silence.id, **row))


def expire(store: Store, silence_id: str, now: datetime) -> None:
    with store.transaction() as c:
        row = c.execute(sa.select(silences).where(silences.c.id == silence_id)).first()
        if row is None:
            raise SilenceError(f"no silence {silence_id!r}"
                               + (" (silences from the config are expired in git)"
                                  if silence_id.startswith("cfg-") else ""))
        values = {"ends_at": min(row.ends_at, to_micros(now)), "updated_at": to_micros(now)}
        if row.starts_at > to_micros(now):
            values["starts_at"] = to_micros(now)
        c.execute(sa.update(silences).where(silences.c.id == silence_id).values(**values))
