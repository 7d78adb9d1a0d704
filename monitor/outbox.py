"""The sender: drains the durable outbox through the notifiers, with backoff.

Each message is marked in the store after its delivery: ``sent``, retried later
with exponential backoff (honouring a server's Retry-After), or ``dead`` after
a permanent failure or too many attempts. A failing receiver never blocks the
others: due messages of every receiver are tried on each pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.store import Store, to_micros
from notifiers.base import DeliveryError, Notification

log = logging.getLogger("kpimon.outbox")


@dataclass(frozen=True)
class Backoff:
    initial: timedelta = timedelta(seconds=2)
    maximum: timedelta = timedelta(minutes=5)
    max_attempts: int = 12

    def delay(self, attempts: int, retry_after: float | None) -> timedelta:
        delay = min(self.initial * (2 ** max(attempts - 1, 0)), self.maximum)
        if retry_after is not None:
            delay = max(delay, timedelta(seconds=retry_after))
        return delay


Outcome = Callable[[str, str], None]  # (receiver, outcome) for metrics


class Sender:
    def __init__(self, store: Store, notifiers: Mapping[str, object], backoff: Backoff = Backoff(),
                 on_outcome: Outcome | None = None):
        self.store, self.notifiers, self.backoff = store, notifiers, backoff
        self.on_outcome = on_outcome or (lambda receiver, outcome: None)

    def drain(self, now: datetime) -> int:
        """Try every due message once; returns how many were delivered."""
        delivered = 0
        blocked: set[str] = set()  # a receiver that failed this pass waits for its backoff
        for msg in self.store.due_messages(now, limit=500):
            if msg.receiver in blocked:
                continue
            if self._deliver(msg, now):
                delivered += 1
            else:
                blocked.add(msg.receiver)
        return delivered

    def _deliver(self, msg, now: datetime) -> bool:
        notifier = self.notifiers.get(msg.receiver)
        attempts = msg.attempts + 1
        if notifier is None:
            self._dead(msg, attempts, f"receiver {msg.receiver!r} is no longer configured")
            return False
        payload = json.loads(msg.payload)
        notification = Notification(msg.receiver, payload["status"], tuple(payload["alerts"]),
                                    payload.get("groupLabels", {}))
        try:
            notifier.send(notification)
        except DeliveryError as exc:
            if exc.retryable and attempts < self.backoff.max_attempts:
                delay = self.backoff.delay(attempts, exc.retry_after)
                log.warning("delivery to %s failed (attempt %d), retrying in %s: %s",
                            msg.receiver, attempts, delay, exc)
                self.store.mark_message(msg.id, attempts=attempts, last_error=str(exc),
                                        next_attempt_at=to_micros(now + delay))
                self.on_outcome(msg.receiver, "retry")
            else:
                self._dead(msg, attempts, str(exc))
            return False
        self.store.mark_message(msg.id, status="sent", attempts=attempts, sent_at=to_micros(now),
                                last_error=None)
        self.on_outcome(msg.receiver, "sent")
        return True

    def _dead(self, msg, attempts: int, error: str) -> None:
        log.error("message %d to %s dead-lettered after %d attempt(s): %s", msg.id,
                  msg.receiver, attempts, error)
        self.store.mark_message(msg.id, status="dead", attempts=attempts, last_error=error)
        self.on_outcome(msg.receiver, "dead")
