"""Receiver types, registered in one explicit dict: ``type`` in the config -> class."""

from __future__ import annotations

from notifiers.log import LogNotifier
from notifiers.slack import SlackNotifier

NOTIFIER_TYPES: dict[str, type] = {
    "log": LogNotifier,
    "slack": SlackNotifier,
}
