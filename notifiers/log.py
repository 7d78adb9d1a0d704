"""The ``log`` receiver: writes each notification to the daemon's log."""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

from notifiers.base import Notification, ReceiverConfig

log = logging.getLogger("kpimon.notify")


class LogConfig(ReceiverConfig):
    type: Literal["log"] = "log"
    template: str = "log.txt.j2"


class LogNotifier:
    config_model: ClassVar[type[ReceiverConfig]] = LogConfig

    def __init__(self, config: LogConfig, renderer):
        self.config, self.renderer = config, renderer

    def send_report(self, report: dict) -> None:
        log.info("[%s] %s", self.config.name, report["subject"])
        for line in report["text"].strip().splitlines():
            log.info("[%s] %s", self.config.name, line)

    def send(self, notification: Notification) -> None:
        text = self.renderer.render(self.config.template, notification, self.config.locale)
        for line in text.strip().splitlines():
            log.info("[%s] %s", self.config.name, line)
