"""A real Celery worker for tests: a `celery worker` subprocess on this run's test databases and broker.

`HUB_USE_TEST_DATABASES=1` points the worker's settings at the test databases of this run
(`HUB_TEST_RUN`), and the broker keys carry the run's prefix, so concurrent runs never share tasks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    """A `celery worker` subprocess that uses this test run's databases and broker prefix."""

    def __init__(
        self,
        log: Path,
        ca_bundle: str,
        *,
        queues: str = "sync,default",
        name: str = "chaos",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log = log
        self.queues = queues
        self.name = name
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "hub.settings.test",
            "HUB_USE_TEST_DATABASES": "1",
            "HUB_TEST_RUN": settings.TEST_RUN,
            "HUB_HOME": str(settings.HUB_HOME),
            "HUB_CONNECTOR_CA_BUNDLE": ca_bundle,
            "HUB_SYNC_RETRY_BASE_MS": "100",
            "HUB_SYNC_RETRY_MAX_SECONDS": "2",
            "HUB_SYNC_MAX_RETRIES": "100",
            "CELERY_VISIBILITY_TIMEOUT": "60",
            # Time limits plus 30 s grace must stay below the visibility timeout (settings refuse otherwise).
            "HUB_TASK_TIME_LIMIT_SECONDS": "25",
            "HUB_SYNC_TASK_TIME_LIMIT_SECONDS": "25",
            "HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS": "25",
            "HUB_BREAKER_COOLDOWN_SECONDS": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        celery = str(Path(sys.executable).parent / "celery")
        argv = [celery, "-A", "celery_worker", "worker", "-Q", self.queues, "--concurrency", "2",
                "--pool", "prefork", "--loglevel", "WARNING",
                "-n", f"{self.name}{os.getpid()}@%h"]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out, stderr=out)

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.restarts += 1
            self.start()

    def children(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole worker, parent and children at once (a lost machine, not a clean shutdown)."""
        assert self.proc is not None
        procs = [psutil.Process(self.proc.pid), *self.children()]
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        procs = [psutil.Process(self.proc.pid), *self.children()]
        self.proc.send_signal(signal.SIGTERM)
        _gone, alive = psutil.wait_procs(procs, timeout=20)
        for proc in alive:
            proc.kill()
        self.proc.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Web:
    """`gunicorn` with deploy/gunicorn.conf.py on this run's test databases, in a process group of its own.

    `options` are extra gunicorn command-line options (they override the config file), `env` extra
    environment variables (e.g. HUB_ADMISSION_*, GUNICORN_THREADS). The port is kept across restarts.
    """

    def __init__(
        self,
        log: Path,
        *,
        options: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.log = log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = options or []
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "hub.settings.test",
            "HUB_USE_TEST_DATABASES": "1",
            "HUB_TEST_RUN": settings.TEST_RUN,
            "HUB_HOME": str(settings.HUB_HOME),
            "OPENBLAS_NUM_THREADS": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        argv = [gunicorn, "hub.wsgi:application", "--config", str(ROOT / "deploy" / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{self.port}", "--worker-tmp-dir", str(self.log.parent),
                "--log-level", "warning", "--access-logfile", "/dev/null", *self.options]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
            )

    def wait_ready(self, deadline: float, path: str = "/readyz") -> None:
        """Wait until `path` answers 200 (readiness by default), failing at `deadline` (time.monotonic)."""
        import time

        import requests

        while True:
            assert self.proc is not None and self.proc.poll() is None, f"gunicorn exited; see {self.log}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"gunicorn not ready; see {self.log}"
            time.sleep(0.2)

    def workers(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def signal(self, signum: int) -> None:
        """Send `signum` to the gunicorn master (SIGTERM: graceful stop; SIGHUP: replace the workers)."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
