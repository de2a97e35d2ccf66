"""Fault injection for the chaos tests: a TCP proxy that can stall, and pausing real server processes.

A stalled proxy behaves like a SIGSTOPped or partitioned server: connections are accepted (the kernel
completes the handshake) but no byte moves in either direction until it resumes, so clients see timeouts, not
refusals.
Pausing a process (SIGSTOP/SIGCONT) is for the whole server, e.g. the embedded Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator

import psutil


class StallProxy:
    """Forward 127.0.0.1:<port> to (host, port); `stall()` freezes every byte until `resume()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="stall-proxy", daemon=True).start()

    def url_for(self, url: str) -> str:
        """`url` (redis://… or postgres://…) with this proxy's port in place of the target's."""
        return url.replace(f":{self.target[1]}", f":{self.port}", 1)

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._flowing.wait()  # a stalled server answers nothing, not even the protocol's greeting
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                self._flowing.wait()
                if not data or self._closed.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def redis_processes(port: int) -> list[psutil.Process]:
    """The Redis server process(es) listening on `port` (the embedded one runs as another user)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in proc.net_connections()):
                found.append(proc)
    return found


@contextlib.contextmanager
def paused(processes: list[psutil.Process]) -> Iterator[None]:
    """SIGSTOP the processes for the block (a stalled server), SIGCONT them afterwards whatever happens."""
    for proc in processes:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Publish this process's tasks to `url` for the block (e.g. a StallProxy in front of the broker)."""
    import kombu.pools

    from hub.celery import app

    def reset() -> None:
        # Celery's pools are entries of kombu's registry keyed by broker URL: close and forget them all, or
        # the original URL would later get back a closed pool.
        kombu.pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    before = app.conf.broker_url
    reset()
    app.conf.broker_url = url
    try:
        yield
    finally:
        reset()
        app.conf.broker_url = before


def broker_messages(queue: str) -> list[dict[str, object]]:
    """The task messages waiting in one queue of this test run's broker: task name and kwargs each."""
    import base64
    import json

    import redis
    from django.conf import settings

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    found = []
    for raw in client.lrange(f"{prefix}{queue}", 0, -1):
        message = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append({"task": message["headers"]["task"], "kwargs": kwargs})
    return found


def broker_purge(queue: str) -> None:
    import redis
    from django.conf import settings

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(f"{prefix}{queue}")
