"""The ``webhook`` receiver: Alertmanager's webhook payload (version 4), optionally signed.

With ``hmac_secret`` the body's HMAC-SHA256 is sent in ``X-Kpimon-Signature:
sha256=<hex>`` so the receiving end can verify who sent it. ``Idempotency-Key``
names the outbox messages delivered: a delivery repeated after a crash (sent,
but killed before it was marked) carries the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import ClassVar, Literal

import requests
from pydantic import Field, SecretStr

from notifiers.base import Notification, ReceiverConfig, check, post

SIGNATURE_HEADER = "X-Kpimon-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"  # the same on a re-delivery after a crash


class WebhookConfig(ReceiverConfig):
    type: Literal["webhook"] = "webhook"
    url: SecretStr = Field(description="May carry a token: use ${WEBHOOK_URL}.")
    hmac_secret: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0)


def payload(n: Notification) -> dict:
    """The Alertmanager webhook shape, so existing consumers work unchanged."""
    def common(key: str) -> dict:
        """Labels (or annotations) every alert of the group shares."""
        first = n.alerts[0].get(key) or {}
        return {k: v for k, v in first.items()
                if all((a.get(key) or {}).get(k) == v for a in n.alerts)}

    return {
        "version": "4", "groupKey": json.dumps(n.group_labels, sort_keys=True),
        "truncatedAlerts": 0, "status": n.status, "receiver": n.receiver,
        "groupLabels": n.group_labels, "commonLabels": common("labels"),
        "commonAnnotations": common("annotations"), "externalURL": "",
        "alerts": [{
            "status": a["status"], "labels": a["labels"], "annotations": a["annotations"],
            "startsAt": a.get("startsAt"), "endsAt": a.get("endsAt") or "0001-01-01T00:00:00Z",
            "generatorURL": a.get("generatorURL", ""),
            "fingerprint": hashlib.sha256(json.dumps(a["labels"], sort_keys=True).encode())
            .hexdigest()[:16],
            "value": a.get("value"), "values": a.get("values", {}),
        } for a in n.alerts],
    }


class WebhookNotifier:
    config_model: ClassVar[type[ReceiverConfig]] = WebhookConfig

    def __init__(self, config: WebhookConfig, renderer, session: requests.Session | None = None):
        self.config, self.renderer = config, renderer
        self.session = session or requests.Session()

    def send(self, notification: Notification) -> None:
        body = json.dumps(payload(notification), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if notification.key:
            headers[IDEMPOTENCY_HEADER] = notification.key
        if self.config.hmac_secret is not None:
            digest = hmac.new(self.config.hmac_secret.get_secret_value().encode(), body,
                              hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        what = f"webhook {self.config.name}"
        check(post(self.session, self.config.url.get_secret_value(), what, self.config.timeout,
                   data=body, headers=headers), what)
