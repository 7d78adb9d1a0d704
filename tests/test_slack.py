"""The Slack notifier and the outbox sender against a real local HTTP server."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from werkzeug import Response

from monitor.dispatch import Message
from monitor.kpis import Catalog
from monitor.outbox import Backoff, Sender
from monitor.rendering import NotificationRenderer
from monitor.resources import templates_dir
from monitor.runtime import SAMPLE
from monitor.store import Store
from monitor.templating import Templates
from notifiers.base import PermanentError, RetryableError
from notifiers.slack import SECTION_LIMIT, SlackConfig, SlackNotifier, blocks
from tests.conftest import NOW

SECRET_PATH = "/services/T000/B000/s3cr3t"


def notifier(httpserver, locale="en_US") -> SlackNotifier:
    renderer = NotificationRenderer(Templates([templates_dir()], Catalog(), "RUB", locale))
    cfg = SlackConfig(name="team", type="slack", webhook_url=httpserver.url_for(SECRET_PATH),
                      timeout=2)
    return SlackNotifier(cfg, renderer)


def payload(notification):
    return {"receiver": notification.receiver, "status": notification.status,
            "groupLabels": notification.group_labels, "alerts": list(notification.alerts)}


def test_posts_block_kit_with_text_fallback(httpserver):
    httpserver.expect_oneshot_request(SECRET_PATH, method="POST").respond_with_data("ok")
    notifier(httpserver).send(SAMPLE)
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert "CPA above target" in body["text"]
    assert body["blocks"][0]["type"] == "section"
    assert "*RUB\u00a0712*" in body["text"]  # whole units from 100 up, half-even rounding


def test_russian_locale_formats_numbers_the_russian_way(httpserver):
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_data("ok")
    notifier(httpserver, "ru_RU").send(SAMPLE)
    text = json.loads(httpserver.log[0][0].data)["text"]
    assert "712\u00a0₽" in text and "Тревога" in text


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True),
                                                   (400, False), (403, False), (404, False)])
def test_classifies_failures(httpserver, status, retryable):
    headers = {"Retry-After": "7"} if status == 429 else {}
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_data(
        "invalid_payload", status=status, headers=headers)
    with pytest.raises(RetryableError if retryable else PermanentError) as info:
        notifier(httpserver).send(SAMPLE)
    assert str(status) in str(info.value)
    assert "s3cr3t" not in str(info.value)
    if status == 429:
        assert info.value.retry_after == 7


def test_unreachable_endpoint_is_retryable_and_does_not_leak_the_url():
    cfg = SlackConfig(name="team", type="slack", timeout=0.5,
                      webhook_url="http://127.0.0.1:9/services/T/B/s3cr3t")
    with pytest.raises(RetryableError) as info:
        SlackNotifier(cfg, NotificationRenderer(Templates([templates_dir()], Catalog()))
                      ).send(SAMPLE)
    assert "s3cr3t" not in str(info.value)


def test_long_messages_are_split_within_slack_limits():
    text = "\n\n".join("line " * 200 for _ in range(80))
    out = blocks(text)
    assert len(out) <= 50
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for b in out)


def message(receiver: str) -> Message:
    return Message(receiver, payload(SAMPLE), f"{receiver}|firing|{{}}", NOW)


def test_sender_retries_with_backoff_then_delivers_once(httpserver, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    with store.transaction() as conn:
        store.enqueue([message("team")], NOW, conn)
    n = notifier(httpserver)
    sender = Sender(store, {"team": n}, Backoff(initial=timedelta(seconds=10)))
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_data("rollup_error", status=500)
    assert sender.drain(NOW) == 0
    # Not due yet: nothing is sent before the backoff has passed.
    assert sender.drain(NOW + timedelta(seconds=5)) == 0
    assert len(httpserver.log) == 1
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_data("ok")
    assert sender.drain(NOW + timedelta(seconds=11)) == 1
    assert sender.drain(NOW + timedelta(minutes=10)) == 0
    assert len(httpserver.log) == 2
    assert store.outbox_counts() == {"sent": 1}


def test_retry_after_is_honoured(httpserver, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    with store.transaction() as conn:
        store.enqueue([message("team")], NOW, conn)
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_response(
        Response("rate limited", status=429, headers={"Retry-After": "30"}))
    sender = Sender(store, {"team": notifier(httpserver)}, Backoff(initial=timedelta(seconds=1)))
    sender.drain(NOW)
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_data("ok")
    assert sender.drain(NOW + timedelta(seconds=20)) == 0
    assert sender.drain(NOW + timedelta(seconds=31)) == 1


def test_permanent_failure_is_dead_lettered_at_once(httpserver, tmp_path, caplog):
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    with store.transaction() as conn:
        store.enqueue([message("team")], NOW, conn)
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_data("channel_not_found",
                                                                     status=404)
    outcomes = []
    sender = Sender(store, {"team": notifier(httpserver)},
                    on_outcome=lambda r, o: outcomes.append((r, o)))
    sender.drain(NOW)
    assert store.outbox_counts() == {"dead": 1}
    assert outcomes == [("team", "dead")]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("kpimon"))
    assert "dead-lettered" in ours and "s3cr3t" not in ours


def test_a_failing_receiver_does_not_block_another(httpserver, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    with store.transaction() as conn:
        store.enqueue([message("down"), message("team")], NOW, conn)
    down = SlackNotifier(SlackConfig(name="down", type="slack", timeout=0.5,
                                     webhook_url="http://127.0.0.1:9/x"),
                         NotificationRenderer(Templates([templates_dir()], Catalog())))
    httpserver.expect_oneshot_request(SECRET_PATH).respond_with_data("ok")
    sender = Sender(store, {"down": down, "team": notifier(httpserver)})
    assert sender.drain(NOW) == 1
    assert store.outbox_counts() == {"pending": 1, "sent": 1}
