"""A real Prometheus server scraping a kpimon under test (Debian's `prometheus`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import write


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    """Run Prometheus scraping 127.0.0.1:target_port every second; yields its base URL."""
    port = free_port()
    config = write(tmp_path / "prometheus.yml", f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        scrape_configs:
          - job_name: kpimon
            static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
    """)
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def query(base: str, promql: str) -> list[dict]:
    resp = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert resp["status"] == "success", resp
    return resp["data"]["result"]


def try_query(base: str, promql: str) -> list[dict] | None:
    """A query while the server may still be starting: None until it answers."""
    try:
        return query(base, promql)
    except requests.RequestException:
        return None
