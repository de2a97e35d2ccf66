"""An over-long request line gets 414 from gunicorn, configured as deployed (deploy/gunicorn.conf.py).

A real gunicorn on loopback with the production config file (bound to a free port, one worker): a query
string past gunicorn's 4094-byte request line limit never reaches Django; a normal one does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hub.settings.test",
        "HUB_USE_TEST_DATABASES": "1",
        "HUB_TEST_RUN": settings.TEST_RUN,
        "HUB_HOME": str(settings.HUB_HOME),
        "WEB_CONCURRENCY": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    argv = [gunicorn, "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "hub.wsgi:application"]
    with (tmp_path / "gunicorn.log").open("ab") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_an_over_long_request_line_gets_414_not_a_server_error(web: str) -> None:
    fits = requests.get(f"{web}/healthz", params={"q": "a" * 3000}, timeout=10)
    assert fits.status_code == 200
    too_long = requests.get(f"{web}/api/v1/tenants/", params={"limit": "9" * 5000}, timeout=10)
    assert too_long.status_code == 414
    assert "Traceback" not in too_long.text
