"""The ``alertmanager`` receiver: alerts pushed to Alertmanager's API v2, as Prometheus does.

Alertmanager works on leases: a firing alert is posted with ``endsAt`` a little
ahead (``lease``) and re-posted every ``resend_interval`` while it fires (the
daemon's lease job does that), so an Alertmanager that stops hearing from
kpimon resolves the alert by itself; a resolved alert is posted with its end
time. Every URL of an HA pair or cluster gets every post; a delivery succeeds
when at least one of them accepted it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import requests
from pydantic import Field, SecretStr

from monitor.durations import Duration
from notifiers.base import (
    DeliveryError,
    Notification,
    PermanentError,
    ReceiverConfig,
    RetryableError,
    http_failure,
)

log = logging.getLogger("kpimon.notify")


class AlertmanagerConfig(ReceiverConfig):
    type: Literal["alertmanager"] = "alertmanager"
    urls: list[str] = Field(min_length=1, description="Base URLs of every Alertmanager, "
                            "e.g. http://alertmanager-0:9093.")
    bearer_token: SecretStr | None = Field(default=None, description="Use ${AM_TOKEN}.")
    timeout: float = Field(default=10.0, gt=0)
    lease: Duration = Field(default="5m", description="endsAt of a firing alert is now "
                            "plus this; it must exceed resend_interval.")
    resend_interval: Duration = Field(default="1m", description="How often firing alerts "
                                      "are re-posted.")


def am_alert(alert: dict[str, Any], ends_at: datetime) -> dict[str, Any]:
    """One alert in API v2 shape: string labels (empty ones dropped) and annotations."""
    annotations = {k: str(v) for k, v in (alert.get("annotations") or {}).items() if v}
    if alert.get("value") is not None:
        annotations.setdefault("value", f"{alert['value']:.6g}")
    return {
        "labels": {k: str(v) for k, v in alert["labels"].items() if v not in (None, "")},
        "annotations": annotations,
        "startsAt": alert.get("startsAt"),
        "endsAt": ends_at.isoformat(),
        "generatorURL": alert.get("generatorURL") or "",
    }


class AlertmanagerNotifier:
    config_model: ClassVar[type[ReceiverConfig]] = AlertmanagerConfig

    def __init__(self, config: AlertmanagerConfig, renderer=None,
                 session: requests.Session | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.config, self.clock = config, clock
        self.session = session or requests.Session()
        self.rate_limits: list[tuple[int, timedelta]] = []

    def send(self, notification: Notification) -> None:
        now = self.clock()
        self.post([am_alert(a, self._ends(a, now)) for a in notification.alerts])

    def refresh(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Renew the leases of alerts still firing (the daemon's lease job)."""
        if alerts:
            now = self.clock()
            self.post([am_alert(a, now + self.config.lease) for a in alerts])

    def _ends(self, alert: dict[str, Any], now: datetime) -> datetime:
        if alert["status"] == "resolved":
            ended = alert.get("endsAt")
            return datetime.fromisoformat(ended) if ended else now
        return now + self.config.lease

    def post(self, alerts: list[dict[str, Any]]) -> None:
        headers = {}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        failures: list[DeliveryError] = []
        for base in self.config.urls:
            what = f"alertmanager {self.config.name} ({base})"
            try:
                answer = self.session.post(f"{base.rstrip('/')}/api/v2/alerts", json=alerts,
                                           headers=headers, timeout=self.config.timeout)
            except requests.RequestException as exc:
                failures.append(RetryableError(f"{what}: {type(exc).__name__}"))
                continue
            if 200 <= answer.status_code < 300:
                continue
            failures.append(http_failure(answer.status_code, answer.text,
                                         answer.headers.get("Retry-After"), what))
        if len(failures) < len(self.config.urls):
            for failure in failures:  # another member took it; the cluster gossips it on
                log.warning("%s", failure)
            return
        if all(isinstance(f, PermanentError) for f in failures):
            raise PermanentError("; ".join(map(str, failures)))
        raise RetryableError("; ".join(map(str, failures)),
                             max((f.retry_after or 0 for f in failures), default=0) or None)
