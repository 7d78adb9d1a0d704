"""The notifier contract: one rendered notification in, one delivery out.

A notifier raises ``RetryableError`` for failures worth another try (timeouts,
HTTP 429 and 5xx; ``retry_after`` carries the server's wish) and
``PermanentError`` for the rest (4xx, bad config). The outbox decides when to
try again; a notifier never sleeps or loops itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Protocol

import requests
from pydantic import BaseModel, ConfigDict, Field

from monitor.durations import Duration
from monitor.errors import KpimonError


class DeliveryError(KpimonError):
    retryable = False

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RetryableError(DeliveryError):
    retryable = True


class PermanentError(DeliveryError):
    retryable = False


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(gt=0)
    per: Duration


class ReceiverConfig(BaseModel):
    """Settings every receiver type shares."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    type: str
    send_resolved: bool = True
    locale: str | None = Field(default=None, description="Defaults to global.locale.")
    rate_limits: list[RateLimit] | None = Field(
        default=None, description="At most `count` messages `per` period, e.g. "
        "[{count: 1, per: 1s}]; the receiver type's own limits when omitted "
        "(Slack 1/s, Telegram 1/s and 20/min for groups).")

    def limits(self, default: list[tuple[int, timedelta]]) -> list[tuple[int, timedelta]]:
        if self.rate_limits is None:
            return default
        return [(r.count, r.per) for r in self.rate_limits]


@dataclass(frozen=True)
class Notification:
    """What a receiver is asked to deliver: one group of alerts with one status."""

    receiver: str
    status: str  # "firing" or "resolved"
    alerts: tuple[dict[str, Any], ...]
    group_labels: dict[str, str]
    # The outbox messages delivered by this notification: the same on a retry
    # after a crash, so a receiving end can drop a duplicate.
    key: str = ""
    digest: bool = False  # a scheduled digest: alerts of either status, each with its own


class Notifier(Protocol):
    config_model: ClassVar[type[ReceiverConfig]]

    def send(self, notification: Notification) -> None: ...


def post(session: requests.Session, url: str, what: str, timeout: float,
         **kwargs: Any) -> requests.Response:
    """POST with a timeout; a network failure is retryable and never shows the URL
    (webhook URLs and bot tokens are secrets)."""
    try:
        return session.post(url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise RetryableError(f"{what}: {type(exc).__name__}") from None


def check(resp: requests.Response, what: str) -> None:
    """Raise the classified failure of a non-2xx answer."""
    if not 200 <= resp.status_code < 300:
        raise http_failure(resp.status_code, resp.text, resp.headers.get("Retry-After"), what)


def http_failure(status: int, body: str, retry_after: str | None, what: str) -> DeliveryError:
    """Classify an HTTP answer: 429 and 5xx are retryable, other 4xx are not."""
    text = (body or "").strip()[:200]
    message = f"{what}: HTTP {status}" + (f": {text}" if text else "")
    if status == 429 or status >= 500:
        return RetryableError(message, _seconds(retry_after))
    return PermanentError(message)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
