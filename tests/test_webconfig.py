"""TLS and basic auth from an exporter-toolkit web.yml, with a real TLS handshake."""

from __future__ import annotations

import gzip
import subprocess
import sys

import bcrypt
import pytest
import requests

from exporters.exposition import Payload
from monitor.errors import ConfigError
from monitor.server import ApiContext, App, HttpServer
from monitor.webconfig import BasicAuth, load_web_config, ssl_context
from tests.conftest import self_signed_cert, write


@pytest.fixture
def cert(tmp_path):
    cert, _ = self_signed_cert(tmp_path)
    return cert


def serve(tmp_path, web_yml: str):
    web, base = load_web_config(write(tmp_path / "web.yml", web_yml))
    body = b"kpimon_build_info 1\n"
    app = App(ApiContext(live=lambda: None, runtime=lambda: None, ready=lambda: True,
                         reload=lambda: None,
                         metrics=lambda: Payload(body, gzip.compress(body), 1)))
    if web.basic_auth_users:
        app = BasicAuth(app, web.basic_auth_users)
    tls = ssl_context(web.tls_server_config, base) if web.tls_server_config else None
    server = HttpServer("127.0.0.1", 0, app, tls)
    server.start()
    return server


def test_tls_and_basic_auth(tmp_path, cert):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    server = serve(tmp_path, f"""
        tls_server_config: {{cert_file: cert.pem, key_file: key.pem}}
        basic_auth_users: {{prometheus: "{hashed}"}}
    """)
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        ok = requests.get(url, auth=("prometheus", "s3cret"), verify=str(cert), timeout=5)
        assert ok.status_code == 200 and ok.text == "kpimon_build_info 1\n"
        again = requests.get(url, auth=("prometheus", "s3cret"), verify=str(cert), timeout=5)
        assert again.status_code == 200  # served from the verified-credentials cache
        for auth in (("prometheus", "wrong"), ("nobody", "s3cret"), None):
            resp = requests.get(url, auth=auth, verify=str(cert), timeout=5)
            assert resp.status_code == 401 and "Basic" in resp.headers["WWW-Authenticate"]
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https", "http"), timeout=5)
    finally:
        server.stop()


def test_a_plain_password_is_refused_with_its_line(tmp_path):
    path = write(tmp_path / "web.yml", "basic_auth_users:\n  prometheus: hunter2\n")
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert "web.yml:2:" in str(info.value) and "bcrypt hash" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_check_validates_the_web_config(tmp_path):
    write(tmp_path / "web.yml", "tls_server_config: {cert_file: none.crt}\n")
    config = write(tmp_path / "kpimon.yaml", "server: {web_config_file: web.yml}\n")
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "web.yml:1:" in result.stderr and "key_file" in result.stderr
