"""The ``telegram`` receiver: a bot's sendMessage in HTML parse mode.

Telegram takes at most 4096 characters a message: a longer notification is
split at line breaks into several messages, in order, never cut mid-tag. A 429
carries ``parameters.retry_after``, which the outbox honours.
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import ClassVar, Literal

import requests
from pydantic import Field, SecretStr

from notifiers.base import Notification, ReceiverConfig, http_failure, post

LIMIT = 4096


class TelegramConfig(ReceiverConfig):
    type: Literal["telegram"] = "telegram"
    bot_token: SecretStr = Field(description="Use ${TELEGRAM_BOT_TOKEN}.")
    chat_id: str
    api_url: str = "https://api.telegram.org"
    template: str = "telegram.html.j2"
    timeout: float = Field(default=10.0, gt=0)


def split(text: str, limit: int = LIMIT) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at line breaks (the template closes
    its tags on every line, so a piece never leaves a tag open)."""
    pieces, current = [], ""
    for line in text.strip().split("\n"):
        while len(line) > limit:  # a single overlong line: cut it hard
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            pieces.append(current)
            candidate = line
        current = candidate
    if current.strip():
        pieces.append(current)
    return pieces


class TelegramNotifier:
    config_model: ClassVar[type[ReceiverConfig]] = TelegramConfig

    def __init__(self, config: TelegramConfig, renderer, session: requests.Session | None = None):
        self.config, self.renderer = config, renderer
        self.session = session or requests.Session()
        # Bot API limits: one message a second per chat, twenty a minute per group.
        limits = [(1, timedelta(seconds=1))]
        if str(config.chat_id).startswith("-"):
            limits.append((20, timedelta(minutes=1)))
        self.rate_limits = config.limits(limits)

    def send(self, notification: Notification) -> None:
        text = self.renderer.render(self.config.template, notification, self.config.locale)
        url = (f"{self.config.api_url.rstrip('/')}/bot"
               f"{self.config.bot_token.get_secret_value()}/sendMessage")
        for piece in split(text):
            self._post(url, {"chat_id": self.config.chat_id, "text": piece,
                             "parse_mode": "HTML", "disable_web_page_preview": True})

    def send_report(self, report: dict) -> None:
        """A report's summary as text (the charts stay in the emailed or saved report)."""
        url = (f"{self.config.api_url.rstrip('/')}/bot"
               f"{self.config.bot_token.get_secret_value()}/sendMessage")
        text = f"<b>{html.escape(report['subject'])}</b>\n\n{html.escape(report['text'])}"
        for piece in split(text):
            self._post(url, {"chat_id": self.config.chat_id, "text": piece,
                             "parse_mode": "HTML", "disable_web_page_preview": True})

    def _post(self, url: str, body: dict) -> None:
        what = f"telegram {self.config.name}"
        resp = post(self.session, url, what, self.config.timeout, json=body)
        if resp.status_code == 200:
            return
        answer = _json(resp)
        retry_after = answer.get("parameters", {}).get("retry_after")
        raise http_failure(resp.status_code, str(answer.get("description", resp.text)),
                           str(retry_after) if retry_after is not None else None, what)


def _json(resp: requests.Response) -> dict:
    """Telegram's error body ({"description", "parameters"}), or {} when it is not JSON."""
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
