"""The email receiver against a real SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import email
import ssl
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from monitor.kpis import Catalog
from monitor.rendering import NotificationRenderer
from monitor.resources import templates_dir
from monitor.runtime import SAMPLE
from monitor.templating import Templates
from notifiers.base import PermanentError, RetryableError
from notifiers.email import EmailConfig, EmailNotifier
from tests.conftest import self_signed_cert
from tests.promserver import free_port


class Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"kpimon", b"pa55")
    # handled=False: aiosmtpd answers 535 itself on a failure.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticator,
                            auth_require_tls=True)
    controller.start()
    yield inbox, port, str(cert)
    controller.stop()


def notifier(port, ca_file, password="pa55", locale="ru_RU") -> EmailNotifier:
    cfg = EmailConfig.model_validate({
        "name": "team", "type": "email", "smarthost": f"127.0.0.1:{port}",
        "from": "kpimon@example.com", "to": ["ppc@example.com", "lead@example.com"],
        "username": "kpimon", "password": password, "ca_file": ca_file, "timeout": 5})
    renderer = NotificationRenderer(Templates([templates_dir()], Catalog(), "RUB", locale))
    return EmailNotifier(cfg, renderer)


def test_multipart_mail_over_starttls_with_auth(smtp):
    inbox, port, ca = smtp
    notifier(port, ca).send(SAMPLE)
    [msg] = inbox.messages
    assert msg["To"] == "ppc@example.com, lead@example.com"
    assert msg["Subject"] == "[FIRING:1] CPAAboveTarget · CPA above target"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "ТРЕВОГА: CPAAboveTarget" in text and "712\u00a0₽" in text
    assert "<b>712\u00a0₽</b>" in html and "check bids" in html


def test_wrong_password_is_permanent_and_an_untrusted_certificate_is_refused(smtp):
    inbox, port, ca = smtp
    with pytest.raises(PermanentError, match="authentication failed"):
        notifier(port, ca, password="nope").send(SAMPLE)
    with pytest.raises(RetryableError, match="SSL"):
        notifier(port, None).send(SAMPLE)  # the system CAs do not know our test cert
    assert inbox.messages == []


def test_server_down_is_retryable():
    with pytest.raises(RetryableError):
        notifier(free_port(), None).send(SAMPLE)
