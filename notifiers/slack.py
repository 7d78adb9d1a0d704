"""The ``slack`` receiver: an incoming webhook with Block Kit and a text fallback.

The template renders Slack mrkdwn; it is split into section blocks within
Slack's limits (3000 characters per section, 50 blocks). Only ``&``, ``<`` and
``>`` are escaped, by the template's ``slack_escape`` filter.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

import requests
from pydantic import Field, SecretStr

from monitor.templating import slack_escape
from notifiers.base import Notification, ReceiverConfig, check, post

SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
FALLBACK_LIMIT = 3000


class SlackConfig(ReceiverConfig):
    type: Literal["slack"] = "slack"
    webhook_url: SecretStr = Field(description="Use ${SLACK_WEBHOOK_URL}; never commit it.")
    template: str = "slack.md.j2"
    timeout: float = Field(default=10.0, gt=0)


class SlackNotifier:
    config_model: ClassVar[type[ReceiverConfig]] = SlackConfig

    def __init__(self, config: SlackConfig, renderer, session: requests.Session | None = None):
        self.config, self.renderer = config, renderer
        self.session = session or requests.Session()
        # Slack accepts about one message a second per incoming webhook.
        self.rate_limits = config.limits([(1, timedelta(seconds=1))])

    def send(self, notification: Notification) -> None:
        text = self.renderer.render(self.config.template, notification, self.config.locale)
        payload = {"text": text[:FALLBACK_LIMIT], "blocks": blocks(text)}
        what = f"slack {self.config.name}"
        check(post(self.session, self.config.webhook_url.get_secret_value(), what,
                   self.config.timeout, json=payload), what)


    def send_report(self, report: dict) -> None:
        """A report's summary (the charts stay in the emailed or saved report)."""
        text = f"*{slack_escape(report['subject'])}*\n\n{slack_escape(report['text'])}"
        what = f"slack {self.config.name}"
        check(post(self.session, self.config.webhook_url.get_secret_value(), what,
                   self.config.timeout, json={"text": text[:FALLBACK_LIMIT],
                                              "blocks": blocks(text)}), what)


def blocks(text: str) -> list[dict]:
    """Cut mrkdwn into section blocks at paragraph or line breaks, within Slack's limits."""
    chunks: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        while len(paragraph) > SECTION_LIMIT:
            cut = paragraph.rfind("\n", 0, SECTION_LIMIT)
            cut = cut if cut > 0 else SECTION_LIMIT
            chunks.append(paragraph[:cut])
            paragraph = paragraph[cut:].lstrip("\n")
        if paragraph.strip():
            chunks.append(paragraph)
    if len(chunks) > BLOCK_LIMIT:
        chunks = [*chunks[: BLOCK_LIMIT - 1], f"… and {len(chunks) - BLOCK_LIMIT + 1} more"]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks]
