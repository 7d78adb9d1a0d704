"""Webhook and Telegram receivers against a real local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from monitor.kpis import Catalog
from monitor.rendering import NotificationRenderer
from monitor.resources import templates_dir
from monitor.runtime import SAMPLE
from monitor.templating import Templates
from notifiers.base import Notification, PermanentError, RetryableError
from notifiers.telegram import LIMIT, TelegramConfig, TelegramNotifier, split
from notifiers.webhook import SIGNATURE_HEADER, WebhookConfig, WebhookNotifier

TOKEN = "123456:s3cr3t-token"


def renderer(locale="ru_RU"):
    return NotificationRenderer(Templates([templates_dir()], Catalog(), "RUB", locale))


def test_webhook_sends_the_alertmanager_payload_signed(httpserver):
    httpserver.expect_oneshot_request("/hook", method="POST").respond_with_data("ok")
    cfg = WebhookConfig(name="ops", type="webhook", url=httpserver.url_for("/hook"),
                        hmac_secret="shared-secret")
    WebhookNotifier(cfg, renderer()).send(SAMPLE)
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert body["version"] == "4" and body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "CPAAboveTarget"}
    assert body["commonLabels"]["campaign"] == "brand"
    assert body["alerts"][0]["labels"]["alertname"] == "CPAAboveTarget"
    expected = hmac.new(b"shared-secret", request.data, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"sha256={expected}"


def test_webhook_failures_are_classified(httpserver):
    cfg = WebhookConfig(name="ops", type="webhook", url=httpserver.url_for("/hook"))
    httpserver.expect_oneshot_request("/hook").respond_with_data("no", status=503)
    with pytest.raises(RetryableError):
        WebhookNotifier(cfg, renderer()).send(SAMPLE)
    httpserver.expect_oneshot_request("/hook").respond_with_data("bad", status=400)
    with pytest.raises(PermanentError):
        WebhookNotifier(cfg, renderer()).send(SAMPLE)


def telegram(httpserver) -> TelegramNotifier:
    cfg = TelegramConfig(name="oncall", type="telegram", bot_token=TOKEN, chat_id="-100200",
                         api_url=httpserver.url_for("/"))
    return TelegramNotifier(cfg, renderer())


def test_telegram_sends_html_in_russian(httpserver):
    httpserver.expect_oneshot_request(f"/bot{TOKEN}/sendMessage").respond_with_json(
        {"ok": True, "result": {}})
    telegram(httpserver).send(SAMPLE)
    body = json.loads(httpserver.log[0][0].data)
    assert body["parse_mode"] == "HTML" and body["chat_id"] == "-100200"
    assert "<b>Тревога: CPAAboveTarget</b>" in body["text"]
    assert "712\u00a0₽" in body["text"] and "<code>brand</code>" in body["text"]


def test_telegram_escapes_html_in_labels(httpserver):
    httpserver.expect_oneshot_request(f"/bot{TOKEN}/sendMessage").respond_with_json({"ok": True})
    alert = {**SAMPLE.alerts[0], "labels": {**SAMPLE.alerts[0]["labels"],
                                            "campaign": "<sale> & more"}}
    telegram(httpserver).send(Notification("oncall", "firing", (alert,), {}))
    assert "&lt;sale&gt; &amp; more" in json.loads(httpserver.log[0][0].data)["text"]


def test_telegram_429_carries_retry_after_and_never_the_token(httpserver):
    httpserver.expect_oneshot_request(f"/bot{TOKEN}/sendMessage").respond_with_json(
        {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 17",
         "parameters": {"retry_after": 17}}, status=429)
    with pytest.raises(RetryableError) as info:
        telegram(httpserver).send(SAMPLE)
    assert info.value.retry_after == 17
    assert "s3cr3t" not in str(info.value)


def test_long_telegram_messages_are_split_at_lines_in_order(httpserver):
    httpserver.expect_request(f"/bot{TOKEN}/sendMessage").respond_with_json({"ok": True})
    alerts = tuple({**SAMPLE.alerts[0], "labels": {**SAMPLE.alerts[0]["labels"],
                                                   "campaign": f"campaign_{i:03d}"}}
                   for i in range(60))
    telegram(httpserver).send(Notification("oncall", "firing", alerts, {}))
    texts = [json.loads(r.data)["text"] for r, _ in httpserver.log]
    assert len(texts) > 1 and all(len(t) <= LIMIT for t in texts)
    joined = "\n".join(texts)
    assert joined.index("campaign_000") < joined.index("campaign_059")
    assert all(t.count("<b>") == t.count("</b>") for t in texts)


def test_split_cuts_an_overlong_line():
    assert [len(p) for p in split("x" * 9000)] == [4096, 4096, 808]


def test_notify_test_command_sends_a_sample(tmp_path, httpserver):
    import subprocess
    import sys

    from tests.conftest import write

    httpserver.expect_oneshot_request("/hook").respond_with_data("ok")
    config = write(tmp_path / "kpimon.yaml", f"""
        rule_files: []
        receivers: [{{name: ops, type: webhook, url: "{httpserver.url_for('/hook')}"}}]
        route: {{receiver: ops}}
    """)
    run = [sys.executable, "-m", "monitor.cli", "notify", "test", "-c", str(config)]
    result = subprocess.run([*run, "--receiver", "ops"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "sent a sample firing message" in result.stdout
    assert json.loads(httpserver.log[0][0].data)["status"] == "firing"
    missing = subprocess.run([*run, "--receiver", "nope"], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and "no receiver named 'nope'" in missing.stderr
