"""Rendering a notification with a receiver's template, never losing it to a bug.

A template error at send time falls back to a plain built-in text and is
counted, so a typo in a template costs formatting, not the alert.
"""

from __future__ import annotations

import logging
from typing import Any

from monitor.templating import Templates
from notifiers.base import Notification

log = logging.getLogger("kpimon.render")


class NotificationRenderer:
    def __init__(self, templates: Templates, links: dict[str, str] | None = None):
        self.templates = templates
        self.links = links or {}
        self.failures = 0

    def context(self, n: Notification) -> dict[str, Any]:
        return {
            "receiver": n.receiver, "status": n.status, "alerts": list(n.alerts),
            "digest": n.digest,
            "group_labels": n.group_labels, **self.links,
        }

    def render(self, template: str, notification: Notification, locale: str | None) -> str:
        try:
            return self.templates.render(template, self.context(notification), locale)
        except Exception as exc:  # any template failure: fall back, never drop
            self.failures += 1
            log.error("template %s failed (%s: %s); sending the plain fallback", template,
                      type(exc).__name__, exc)
            return plain_text(notification)


def plain_text(n: Notification) -> str:
    lines = [f"[{n.status.upper()}] {len(n.alerts)} alert(s)"]
    for a in n.alerts:
        labels = ", ".join(f"{k}={v}" for k, v in a["labels"].items())
        summary = a.get("annotations", {}).get("summary", "")
        lines.append(f"- {labels} value={a.get('value')} {summary}".rstrip())
    return "\n".join(lines)
