"""Fault injection shared by the chaos tests: pause real service processes (SIGSTOP/SIGCONT).

A paused process keeps its sockets open and answers nothing, as a stalled or partitioned server does. The
embedded PostgreSQL runs as another user (hubsvc); the tests run as root and may signal it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import psutil

from hub.settings.env import embedded_state


def postgres_processes() -> list[psutil.Process]:
    """The embedded PostgreSQL server of this HUB_HOME: the postmaster and every backend and helper."""
    state = embedded_state() or {}
    pid = state.get("postgres", {}).get("pid")
    assert pid, "no embedded PostgreSQL is running (manage.py services up)"
    master = psutil.Process(int(pid))
    return [master, *master.children(recursive=True)]


@contextlib.contextmanager
def paused(processes: list[psutil.Process]) -> Iterator[None]:
    """SIGSTOP `processes` for the duration of the block, then SIGCONT them (even if the block fails)."""
    stopped = []
    try:
        for proc in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGSTOP)
                stopped.append(proc)
        yield
    finally:
        for proc in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)
