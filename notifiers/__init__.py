"""Receiver types, registered in one explicit dict: ``type`` in the config -> class."""

from __future__ import annotations

from notifiers.alertmanager import AlertmanagerNotifier
from notifiers.email import EmailNotifier
from notifiers.log import LogNotifier
from notifiers.slack import SlackNotifier
from notifiers.telegram import TelegramNotifier
from notifiers.webhook import WebhookNotifier

NOTIFIER_TYPES: dict[str, type] = {
    "alertmanager": AlertmanagerNotifier,
    "email": EmailNotifier,
    "log": LogNotifier,
    "slack": SlackNotifier,
    "telegram": TelegramNotifier,
    "webhook": WebhookNotifier,
}
