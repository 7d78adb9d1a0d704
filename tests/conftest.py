"""Shared helpers: config and rule files written to tmp_path, fixed clocks."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

# A fixed instant: Friday 2026-03-13 12:00 UTC (15:00 in Moscow).
NOW = datetime(2026, 3, 13, 12, 0, tzinfo=UTC)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def make_config(tmp_path: Path):
    """Write a config (and optional rule files) into tmp_path; return the config path."""

    def make(config: str, rules: dict[str, str] | None = None) -> Path:
        for name, text in (rules or {}).items():
            write(tmp_path / "rules" / name, text)
        return write(tmp_path / "kpimon.yaml", config)

    return make


def load_ruleset(tmp_path: Path, text: str):
    """Compile rule YAML with the built-in catalog and templates."""
    from monitor.kpis import Catalog
    from monitor.resources import templates_dir
    from monitor.rulefile import Vocabulary, load_rules
    from monitor.templating import Templates

    catalog = Catalog()
    path = write(tmp_path / "rules.yaml", text)
    templates = Templates([templates_dir()], catalog)
    return load_rules([path], Vocabulary(catalog, frozenset(catalog.measures)), templates)


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with openssl: (cert, key)."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="session")
def postgres():
    """The session's PostgreSQL server (tests/pgserver.py)."""
    from tests.pgserver import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    """A store URL for each backend: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kpimon.db'}"
    return request.getfixturevalue("postgres").fresh_database()
