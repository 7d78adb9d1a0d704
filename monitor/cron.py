"""Cron expressions in config files: checked at load time with APScheduler's parser."""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger


def check_cron(value: str | None) -> str | None:
    """A pydantic field validator: the value unchanged, or a ValueError that says why."""
    if value is not None:
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a cron expression: {exc}") from None
    return value
