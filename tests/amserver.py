"""A real Alertmanager for the suite (Debian's `prometheus-alertmanager`), on loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import write
from tests.promserver import free_port


@contextmanager
def alertmanager(folder: Path) -> Iterator[str]:
    """Run one Alertmanager (no cluster) with a do-nothing receiver; yields its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write(folder / "alertmanager.yml", """
        route: {receiver: blackhole, group_wait: 1s}
        receivers: [{name: blackhole}]
    """)
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={config}",
         f"--storage.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/-/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("alertmanager did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def active_alerts(base: str) -> list[dict]:
    return requests.get(f"{base}/api/v2/alerts", params={"active": "true"}, timeout=5).json()
