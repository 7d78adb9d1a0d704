"""The sender: drains the durable outbox through the notifiers, in order, with backoff.

Per receiver, messages go in the order they were queued. A message held for
later (group_wait, group_interval, a muted time, a digest) does not block the
others; a message in backoff after a failure blocks its receiver, so nothing
overtakes it and a receiver that is down is not hammered. When a message is
due, every pending message of its group is merged into one notification (the
latest state of each alert wins) and, once delivered, all are marked sent with
the group's entry in the notification log, in one transaction.

Failures: retried with exponential backoff (honouring a server's Retry-After)
up to ``max_attempts``; a permanent failure (a 4xx, a receiver no longer
configured) or the last attempt dead-letters the message with a log line and
the ``dead`` outcome. Receivers' rate limits (Slack about one message a second
per webhook, Telegram one a second per chat and twenty a minute per group) are
kept by a sliding window each.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.store import Store, to_micros
from notifiers.base import DeliveryError, Notification

log = logging.getLogger("kpimon.outbox")


@dataclass(frozen=True)
class Backoff:
    initial: timedelta = timedelta(seconds=2)
    maximum: timedelta = timedelta(minutes=5)
    max_attempts: int = 40  # at the 5-minute ceiling: about three hours of retrying

    def delay(self, attempts: int, retry_after: float | None) -> timedelta:
        delay = min(self.initial * (2 ** max(attempts - 1, 0)), self.maximum)
        if retry_after is not None:
            delay = max(delay, timedelta(seconds=retry_after))
        return delay


class RateLimiter:
    """Sliding windows of recent sends: ``[(count, per), ...]`` must all allow one more."""

    def __init__(self, limits: Sequence[tuple[int, timedelta]]):
        self.limits = list(limits)
        longest = max((per for _, per in self.limits), default=timedelta(0))
        self.longest = longest
        self.sent: deque[datetime] = deque()

    def allows(self, now: datetime) -> bool:
        while self.sent and now - self.sent[0] >= self.longest:
            self.sent.popleft()
        return all(sum(1 for t in self.sent if now - t < per) < count
                   for count, per in self.limits)

    def record(self, now: datetime) -> None:
        if self.limits:
            self.sent.append(now)


Outcome = Callable[[str, str], None]  # (receiver, outcome) for metrics


class Sender:
    def __init__(self, store: Store, notifiers: Mapping[str, Any], backoff: Backoff = Backoff(),
                 on_outcome: Outcome | None = None):
        self.store, self.notifiers, self.backoff = store, notifiers, backoff
        self.on_outcome = on_outcome or (lambda receiver, outcome: None)
        self.limiters = {name: RateLimiter(getattr(n, "rate_limits", ()))
                         for name, n in notifiers.items()}
        self.stopping = threading.Event()  # set on shutdown: stop between two messages

    def drain(self, now: datetime, deadline: float | None = None) -> int:
        """One pass over the pending messages; returns how many notifications went out.

        Stops early, between two deliveries, on shutdown or at ``deadline``
        (time.monotonic()); what is left stays queued for the next pass or start.
        """
        delivered = 0
        blocked: set[str] = set()
        done: set[int] = set()  # merged into a notification already this pass
        for msg in self.store.pending_messages():
            if self.stopping.is_set() or (deadline is not None and time.monotonic() > deadline):
                break
            if msg.receiver in blocked or msg.id in done:
                continue
            if msg.next_attempt_at > to_micros(now):
                if msg.attempts > 0:  # in backoff: nothing may overtake it
                    blocked.add(msg.receiver)
                continue  # held for later: the others go on
            limiter = self.limiters.get(msg.receiver)
            if limiter is not None and not limiter.allows(now):
                blocked.add(msg.receiver)
                continue
            members = (self.store.group_pending(msg.receiver, msg.group_key)
                       if msg.group_key else [msg])
            done.update(m.id for m in members)
            if self._deliver(msg, members, now):
                delivered += 1
                if limiter is not None:
                    limiter.record(now)
            else:
                blocked.add(msg.receiver)
        return delivered

    def _deliver(self, head, members: list, now: datetime) -> bool:
        notifier = self.notifiers.get(head.receiver)
        attempts = head.attempts + 1
        ids = [m.id for m in members]
        if notifier is None:
            self._dead(head, ids, attempts, f"receiver {head.receiver!r} is no longer "
                                            "configured")
            return False
        payloads = [json.loads(m.payload) for m in members]
        try:
            if "report" in payloads[0]:  # a scheduled report, not an alert group
                notifier.send_report(payloads[0]["report"])
            else:
                notifier.send(merge(head.receiver, payloads,
                                    key="kpimon-" + "-".join(map(str, ids))))
        except DeliveryError as exc:
            if exc.retryable and attempts < self.backoff.max_attempts:
                delay = self.backoff.delay(attempts, exc.retry_after)
                log.warning("delivery to %s failed (attempt %d), retrying in %s: %s",
                            head.receiver, attempts, delay, exc)
                self.store.mark_message(head.id, attempts=attempts, last_error=str(exc),
                                        next_attempt_at=to_micros(now + delay))
                self.on_outcome(head.receiver, "retry")
            else:
                self._dead(head, ids, attempts, str(exc))
            return False
        self.store.mark_sent(ids, head.receiver, head.group_key, now, attempts)
        self.on_outcome(head.receiver, "sent")
        return True

    def _dead(self, head, ids: list[int], attempts: int, error: str) -> None:
        log.error("message %s to %s dead-lettered after %d attempt(s): %s",
                  ",".join(map(str, ids)), head.receiver, attempts, error)
        for msg_id in ids:
            self.store.mark_message(msg_id, status="dead", attempts=attempts, last_error=error)
        self.on_outcome(head.receiver, "dead")


def merge(receiver: str, payloads: list[dict[str, Any]], key: str = "") -> Notification:
    """One notification from a group's queued payloads: each alert once, its latest state."""
    latest: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        for alert in payload["alerts"]:
            key = json.dumps(alert["labels"], sort_keys=True)
            latest.pop(key, None)  # re-insert: keeps the order of the latest updates
            latest[key] = alert
    alerts = tuple(latest.values())
    last = payloads[-1]
    status = last["status"]
    if last.get("digest"):
        status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return Notification(receiver, status, alerts, last.get("groupLabels", {}), key,
                        bool(last.get("digest")))
