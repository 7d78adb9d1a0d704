"""The ``email`` receiver: SMTP with STARTTLS or implicit TLS, text and HTML parts.

TLS always uses a verifying context (the system's CAs, or ``ca_file``), and
every connection has a timeout. ``tls: none`` exists for a relay on localhost.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from notifiers.base import Notification, PermanentError, ReceiverConfig, RetryableError


class EmailConfig(ReceiverConfig):
    type: Literal["email"] = "email"
    smarthost: str = Field(description="host:port of the SMTP server, e.g. smtp.example.com:587")
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = Field(default=None, description="Use ${SMTP_PASSWORD}.")
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    ca_file: str | None = Field(default=None, description="Trust this CA instead of the "
                                "system's (a private relay).")
    subject_template: str = "email.subject.j2"
    text_template: str = "email.txt.j2"
    html_template: str = "email.html.j2"
    timeout: float = Field(default=15.0, gt=0)


class EmailNotifier:
    config_model: ClassVar[type[ReceiverConfig]] = EmailConfig

    def __init__(self, config: EmailConfig, renderer):
        self.config, self.renderer = config, renderer

    def message(self, n: Notification) -> EmailMessage:
        cfg, render = self.config, self.renderer.render
        msg = EmailMessage()
        msg["Subject"] = " ".join(render(cfg.subject_template, n, cfg.locale).split())
        msg["From"], msg["To"] = cfg.sender, ", ".join(cfg.to)
        msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid("kpimon")
        msg.set_content(render(cfg.text_template, n, cfg.locale))
        msg.add_alternative(render(cfg.html_template, n, cfg.locale), subtype="html")
        return msg

    def send(self, notification: Notification) -> None:
        self._deliver(self.message(notification))

    def send_report(self, report: dict) -> None:
        """A report: text, and HTML with its charts as inline (cid:) PNG parts."""
        cfg = self.config
        msg = EmailMessage()
        msg["Subject"] = report["subject"]
        msg["From"], msg["To"] = cfg.sender, ", ".join(cfg.to)
        msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid("kpimon")
        msg.set_content(report["text"])
        msg.add_alternative(report["html"], subtype="html")
        html = msg.get_payload()[-1]
        for cid, data in report.get("images", {}).items():
            html.add_related(base64.b64decode(data), maintype="image", subtype="png",
                             cid=f"<{cid}>", filename=f"{cid}.png")
        self._deliver(msg)

    def _deliver(self, message: EmailMessage) -> None:
        cfg = self.config
        host, _, port = cfg.smarthost.rpartition(":")
        context = ssl.create_default_context(cafile=cfg.ca_file)
        what = f"email {cfg.name}"
        try:
            if cfg.tls == "implicit":
                smtp = smtplib.SMTP_SSL(host, int(port), timeout=cfg.timeout, context=context)
            else:
                smtp = smtplib.SMTP(host, int(port), timeout=cfg.timeout)
            with smtp:
                if cfg.tls == "starttls":
                    smtp.starttls(context=context)
                if cfg.username:
                    _login(smtp, cfg.username,
                           cfg.password.get_secret_value() if cfg.password else "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"{what}: authentication failed ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"{what}: recipients refused: "
                                 f"{', '.join(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            error = PermanentError if 500 <= exc.smtp_code < 600 else RetryableError
            raise error(f"{what}: SMTP {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, timeout, TLS failure
            raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from None


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH PLAIN when offered (one attempt, a clear 535), else smtplib's negotiation."""
    smtp.ehlo_or_helo_if_needed()
    if "PLAIN" in smtp.esmtp_features.get("auth", "").upper().split():
        smtp.user, smtp.password = user, password
        smtp.auth("PLAIN", smtp.auth_plain)
    else:
        smtp.login(user, password)
