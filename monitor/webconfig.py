"""TLS and basic auth for the HTTP server, in the exporter-toolkit ``web.yml`` format.

The same file Prometheus exporters take with ``--web.config.file``:

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
    basic_auth_users:
      prometheus: $2y$10$...   # a bcrypt hash, never a password

Every endpoint then needs the credentials. A successful check is cached (by a
SHA-256 of the credentials, never the password itself) so a scrape does not pay
bcrypt's deliberate slowness every time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import bcrypt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.errors import ConfigError
from monitor.yamlsrc import load_yaml, validate


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: str
    key_file: str
    min_version: str = Field(default="TLS12", pattern=r"^TLS1[23]$")


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"user {user!r}: the password must be a bcrypt hash "
                                 "(htpasswd -nBC 10 USER), never plain text")
        return users


def load_web_config(path: Path) -> tuple[WebConfig, Path]:
    doc = load_yaml(path)
    return validate(doc, WebConfig.model_validate), path.parent


def ssl_context(cfg: TLSServerConfig, base: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if cfg.min_version == "TLS13"
                           else ssl.TLSVersion.TLSv1_2)
    cert, key = (p if Path(p).is_absolute() else base / p for p in (cfg.cert_file, cfg.key_file))
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_server_config: cannot load {cert} / {key}: {exc}") from None
    return ctx


class BasicAuth:
    """WSGI middleware: 401 unless the request carries a known user and password."""

    def __init__(self, app: Callable, users: dict[str, str]):
        self.app, self.users = app, {u: h.encode() for u, h in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        if self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="kpimon"'),
                                            ("Content-Type", "text/plain"),
                                            ("Content-Length", "13")])
        return [b"Unauthorized\n"]

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode() + hashed).digest()
        with self._lock:
            if any(hmac.compare_digest(key, k) for k in self._verified):
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._verified.add(key)
        return True
