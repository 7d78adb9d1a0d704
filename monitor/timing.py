"""When a message may go: group_wait, group_interval, muted times and digests.

The outbox holds a message until its ``not_before`` time; the sender then
merges every pending message of the same group into one notification. So:

* a new group waits ``group_wait`` for more alerts before its first message;
* a group notified less than ``group_interval`` ago waits for the rest of it;
* a digest route's messages wait for the next time of its cron schedule;
* a route muted now (``mute_time_intervals``, or outside its
  ``active_time_intervals``) holds its messages until it is unmuted: held for
  the morning, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from monitor.config import Route
from monitor.timeintervals import TimeInterval, next_unmuted

DEFAULT_GROUP_WAIT = timedelta(0)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Timing:
    intervals: dict[str, TimeInterval] = field(default_factory=dict)
    last_sent: dict[tuple[str, str], datetime] = field(default_factory=dict)
    timezone: str = "UTC"  # of digest schedules

    def not_before(self, node: Route, receiver: str, key: str, now: datetime) -> datetime:
        if node.digest:
            trigger = CronTrigger.from_crontab(node.digest, timezone=self.timezone)
            at = trigger.get_next_fire_time(None, now) or now
        else:
            last = self.last_sent.get((receiver, key))
            if last is None:
                at = now + (node.group_wait or DEFAULT_GROUP_WAIT)
            else:
                at = max(now, last + (node.group_interval or DEFAULT_GROUP_INTERVAL))
        mute = [self.intervals[n] for n in node.mute_time_intervals]
        active = [self.intervals[n] for n in node.active_time_intervals]
        return next_unmuted(at, mute, active) if mute or active else at
