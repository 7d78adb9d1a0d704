"""Noise control end to end in process: silences, time intervals, digests, group_wait,
group_interval and rate limits, delivered to a real local HTTP server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from monitor import silences
from monitor.timeintervals import IntervalSpec, TimeInterval, muted, next_unmuted
from tests.conftest import NOW, write
from tests.test_pipeline import HOOK, Instance, csv_slack_config

RULES = """
    groups:
      - name: paid
        rules:
          - alert: CPAHigh
            expr: cpa > 500
            over: 1d
            by: [campaign]
            labels: {severity: warning}
"""
BAD = "date,campaign,cost,conversions\n2026-03-12,brand,1000,1\n2026-03-12,search,900,1\n"
GOOD = "date,campaign,cost,conversions\n2026-03-12,brand,100,1\n2026-03-12,search,90,1\n"


def setup(tmp_path, httpserver, route: str, extra: str = "", data: str = BAD) -> Instance:
    httpserver.expect_request(HOOK).respond_with_data("ok")
    write(tmp_path / "ads.csv", data)
    write(tmp_path / "rules.yaml", RULES)
    return Instance(csv_slack_config(tmp_path, httpserver.url_for(HOOK), extra, route))


def texts(httpserver) -> list[str]:
    return [json.loads(r.data)["text"] for r, _ in httpserver.log]


# --- silences -------------------------------------------------------------------------


def test_a_config_silence_mutes_until_it_ends_then_the_alert_is_notified(tmp_path, httpserver):
    app = setup(tmp_path, httpserver, "{receiver: slack, group_by: [campaign]}", extra=f"""
silences:
  - matchers: ['campaign="brand"']
    ends_at: "{(NOW + timedelta(hours=1)).isoformat()}"
    comment: brand campaign relaunch
    created_by: anna
""")
    app.cycle(NOW)
    sent = texts(httpserver)
    assert len(sent) == 1 and "search" in sent[0]
    app.cycle(NOW + timedelta(minutes=30))
    assert len(texts(httpserver)) == 1
    app.cycle(NOW + timedelta(hours=1, minutes=1))  # the silence has ended, brand still fires
    sent = texts(httpserver)
    assert len(sent) == 2 and "brand" in sent[1]


def test_an_ad_hoc_silence_is_persisted_and_expiring_it_applies(tmp_path, httpserver):
    app = setup(tmp_path, httpserver, "{receiver: slack, group_by: [campaign]}")
    silence = silences.parse_request({"matchers": ['campaign=~"br.*"'],
                                      "endsAt": (NOW + timedelta(days=1)).isoformat(),
                                      "createdBy": "oncall", "comment": "known"}, NOW)
    silences.save(app.store, silence, NOW)
    app.stop()
    app = Instance(app.rt.loaded.path)  # a restart: the silence is read from the store
    app.cycle(NOW)
    assert [("brand" in t) for t in texts(httpserver)] == [False]
    [listed] = silences.stored(app.store)
    assert listed.state(NOW) == "active" and listed.created_by == "oncall"
    silences.expire(app.store, silence.id, NOW + timedelta(minutes=5))
    assert silences.stored(app.store)[0].state(NOW + timedelta(minutes=5)) == "expired"
    app.cycle(NOW + timedelta(minutes=6))
    assert any("brand" in t for t in texts(httpserver))


@pytest.mark.parametrize(("body", "error"), [
    ({"matchers": [], "endsAt": "2026-03-14T00:00:00Z", "createdBy": "a"}, "at least one"),
    ({"matchers": ['campaign="x"'], "createdBy": "a"}, "endsAt is required"),
    ({"matchers": ['campaign="x"'], "endsAt": "2026-03-14T00:00:00Z"}, "createdBy"),
    ({"matchers": ["campaign"], "endsAt": "2026-03-14T00:00:00Z", "createdBy": "a"},
     "invalid matcher"),
    ({"matchers": ['c="x"'], "endsAt": "2026-03-14T00:00:00", "createdBy": "a"}, "offset"),
])
def test_invalid_silences_are_refused_with_a_reason(body, error):
    with pytest.raises(silences.SilenceError, match=error):
        silences.parse_request(body, NOW)


# --- time intervals -----------------------------------------------------------------------

BUSINESS = TimeInterval(name="business_hours", time_intervals=[IntervalSpec(
    weekdays=["monday:friday"], times=[{"start_time": "09:00", "end_time": "19:00"}],
    location="Europe/Moscow")])
HOLIDAYS = TimeInterval(name="holidays", time_intervals=[IntervalSpec(
    dates=["2026-05-01:2026-05-03", "2026-05-09"], location="Europe/Moscow")])


def msk(*args) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(*args, tzinfo=ZoneInfo("Europe/Moscow"))


@pytest.mark.parametrize(("at", "is_muted"), [
    (msk(2026, 3, 13, 10, 0), False),   # Friday morning
    (msk(2026, 3, 13, 19, 0), True),    # end_time is exclusive
    (msk(2026, 3, 14, 12, 0), True),    # Saturday
    (msk(2026, 5, 1, 12, 0), True),     # a holiday on a Friday
    (msk(2026, 5, 8, 12, 0), False),
])
def test_a_route_active_in_business_hours_and_muted_on_holidays(at, is_muted):
    assert muted(at, [HOLIDAYS], [BUSINESS]) is is_muted


def test_the_next_unmuted_time_skips_nights_weekends_and_holidays():
    assert next_unmuted(msk(2026, 3, 13, 22, 0), [HOLIDAYS], [BUSINESS]) == msk(2026, 3, 16, 9)
    assert next_unmuted(msk(2026, 4, 30, 20, 0), [HOLIDAYS], [BUSINESS]) == msk(2026, 5, 4, 9)


def test_days_of_month_count_from_the_end_and_months_by_name():
    last_day = IntervalSpec(days_of_month=["-1"], months=["february"], location="UTC")
    assert last_day.contains(datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert not last_day.contains(datetime(2026, 2, 27, 12, tzinfo=UTC))
    assert not last_day.contains(datetime(2026, 3, 31, 12, tzinfo=UTC))


def test_a_night_alert_is_held_for_the_morning_not_dropped(tmp_path, httpserver):
    extra = """
time_intervals:
  - name: business_hours
    time_intervals:
      - weekdays: ["monday:friday"]
        times: [{start_time: "09:00", end_time: "19:00"}]
        location: Europe/Moscow
"""
    route = ("{receiver: slack, routes: [{matchers: ['severity=\"warning\"'], receiver: slack, "
             "active_time_intervals: [business_hours]}]}")
    app = setup(tmp_path, httpserver, route, extra)
    night = datetime(2026, 3, 13, 20, 30, tzinfo=UTC)  # 23:30 in Moscow, Friday
    app.cycle(night)
    assert texts(httpserver) == []
    app.drain(datetime(2026, 3, 16, 5, 59, tzinfo=UTC))
    assert texts(httpserver) == []
    app.drain(datetime(2026, 3, 16, 6, 0, tzinfo=UTC))  # Monday 09:00 in Moscow
    assert len(texts(httpserver)) == 1 and "brand" in texts(httpserver)[0]


# --- grouping and timing ------------------------------------------------------------------


def test_group_wait_collects_and_group_interval_spaces_a_groups_messages(tmp_path, httpserver):
    app = setup(tmp_path, httpserver,
                "{receiver: slack, group_by: [alertname], group_wait: 30s, group_interval: 5m}",
                data="date,campaign,cost,conversions\n2026-03-12,brand,1000,1\n")
    app.cycle(NOW)
    assert texts(httpserver) == []  # waiting for more alerts of the group
    (tmp_path / "ads.csv").write_text(BAD)  # search starts firing 20 s later
    app.cycle(NOW + timedelta(seconds=20))
    app.drain(NOW + timedelta(seconds=30))
    [first] = texts(httpserver)
    assert "brand" in first and "search" in first and "(2)" in first  # one message, both
    (tmp_path / "ads.csv").write_text(BAD + "2026-03-12,video,700,1\n")
    app.cycle(NOW + timedelta(minutes=1))
    assert len(texts(httpserver)) == 1  # within group_interval
    app.drain(NOW + timedelta(minutes=5, seconds=30))
    assert len(texts(httpserver)) == 2 and "video" in texts(httpserver)[1]


def test_a_digest_route_sends_one_message_on_its_schedule(tmp_path, httpserver):
    route = "{receiver: slack, group_by: [campaign], digest: '0 9 * * *'}"
    app = setup(tmp_path, httpserver, route, extra="", data=BAD)
    app.cycle(NOW)  # 12:00 UTC; the digest goes at 09:00 UTC tomorrow
    (tmp_path / "ads.csv").write_text(GOOD)
    app.cycle(NOW + timedelta(hours=1))  # both resolve: the digest keeps the latest state
    app.drain(NOW + timedelta(hours=20, minutes=59))
    assert texts(httpserver) == []
    app.drain(datetime(2026, 3, 14, 9, 0, tzinfo=UTC))
    [digest] = texts(httpserver)
    assert "Digest" in digest and "brand" in digest and "search" in digest
    assert digest.count("Resolved at") == 2


def test_slack_is_sent_at_most_once_a_second(tmp_path, httpserver):
    app = setup(tmp_path, httpserver, "{receiver: slack, group_by: [campaign]}")
    app.cycle(NOW, send=False)
    assert app.sender.drain(NOW) == 1
    assert app.sender.drain(NOW + timedelta(milliseconds=500)) == 0
    assert app.sender.drain(NOW + timedelta(seconds=1)) == 1
