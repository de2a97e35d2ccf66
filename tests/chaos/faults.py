"""Fault injection for the chaos tests: a TCP proxy that can stall, process pausers, a chat load generator.

- `StallProxy`: a loopback TCP proxy to a server; `stall()` stops forwarding in both directions while the
  connections stay open (what a paused server or a network partition looks like to a client: no reset, no
  answer), `resume()` lets the bytes flow again. Point one database alias at it to stall that alias only.
- `paused(pids)`: SIGSTOP the processes, SIGCONT them when the block ends, and in any case after `limit`
  seconds (a safety timer), so a failing test never leaves a service stopped.
- `service_pids(name)`: the embedded Postgres (postmaster and every backend) or Redis of this HUB_HOME.
- `celery_broker(url)`: this process publishes its tasks to `url` for a block; `publishing_through_a_proxy`
  does that through a StallProxy in front of the broker; `broker_messages(queue)` / `broker_purge(queue)`
  read and empty one queue of this run's broker; `PUBLISH_BOUND_S` is what one publish may take meanwhile.
- `ChatLoad`: client threads sending chat turns (each with its own Idempotency-Key) and recording every
  answer: status, seconds, Retry-After, or the client-side error.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psutil
import requests
from django.conf import settings

from tests.fixtures.processes import ROOT

#: What one publish may take with the broker stalled: (retries + 1) x (socket timeout), plus connecting.
PUBLISH_BOUND_S = (
    (settings.HUB_BROKER_PUBLISH_RETRIES + 1)
    * (settings.HUB_BROKER_SOCKET_TIMEOUT_MS + settings.HUB_BROKER_CONNECT_TIMEOUT_MS)
    / 1000
)
MARGIN_S = 3.0


class StallProxy:
    """A TCP proxy from a free loopback port to `target_port`, which can stall and resume."""

    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
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
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                self._flowing.wait(0.1)
                if not self._flowing.is_set():
                    continue
                readable, _, _ = select.select([src], [], [], 0.1)
                if not readable or not self._flowing.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # reset, or closed by close()
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _services() -> dict[str, dict[str, object]]:
    state: dict[str, dict[str, object]] = json.loads((Path(settings.HUB_HOME) / "services.json").read_text())
    return state


def service_pids(name: str) -> list[int]:
    """The pids of this HUB_HOME's embedded `postgres` (postmaster and all its children) or `redis`."""
    pid = int(str(_services()[name]["pid"]))
    main = psutil.Process(pid)
    return [pid, *(child.pid for child in main.children(recursive=True))]


@contextlib.contextmanager
def paused(pids: Iterable[int], *, limit: float = 30.0) -> Iterator[None]:
    """SIGSTOP `pids` for the block (at most `limit` seconds: a timer resumes them in any case)."""
    stopped = list(pids)

    def resume() -> None:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    timer = threading.Timer(limit, resume)
    timer.daemon = True
    timer.start()
    try:
        for pid in stopped:
            # A backend may exit between listing and stopping: skip it. Stopping inside the try means a
            # failure here can never leave the others paused for the rest of the run.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        timer.cancel()
        resume()


def redis_kill() -> None:
    """SIGKILL this HUB_HOME's Redis (its data is gone: the test services are ephemeral)."""
    pid = service_pids("redis")[0]
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait(timeout=10)


def redis_restart() -> None:
    """Start this HUB_HOME's Redis again, on the same port and password (`manage.py services up`)."""
    subprocess.run(
        [sys.executable, "manage.py", "services", "up", "--ephemeral"],
        cwd=ROOT,
        env={**os.environ, "HUB_HOME": str(settings.HUB_HOME)},
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass(slots=True)
class Answer:
    """One request of the load: what the client saw."""

    key: str
    conversation_id: str
    started: float
    seconds: float
    status: int | None  # None: no HTTP answer (connection error or client timeout)
    retry_after: str | None
    body: str
    replayed: bool


class ChatLoad:
    """`clients` threads, each in its own conversation, sending small-talk turns back to back."""

    def __init__(self, base: str, api_key: str, *, clients: int = 3, timeout: float = 30.0) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.timeout = timeout
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.conversations = [self._start_conversation() for _ in range(clients)]
        self._threads = [
            threading.Thread(target=self._run, args=(conversation,), daemon=True)
            for conversation in self.conversations
        ]

    def _start_conversation(self) -> str:
        response = requests.post(
            f"{self.base}/api/v1/conversations", json={}, headers=self.headers, timeout=30
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def turn(self, conversation_id: str, key: str) -> Answer:
        started = time.monotonic()
        status: int | None = None
        retry_after = body = None
        replayed = False
        try:
            response = requests.post(
                f"{self.base}/api/v1/conversations/{conversation_id}/messages",
                json={"text": "Hello!"},
                headers={**self.headers, "Idempotency-Key": key},
                timeout=self.timeout,
            )
            status, retry_after, body = (
                response.status_code,
                response.headers.get("Retry-After"),
                response.text,
            )
            replayed = response.headers.get("Idempotent-Replayed") == "true"
        except requests.RequestException as exc:
            body = f"{type(exc).__name__}: {exc}"
        answer = Answer(
            key,
            conversation_id,
            started,
            time.monotonic() - started,
            status,
            retry_after,
            body or "",
            replayed,
        )
        with self._lock:
            self.answers.append(answer)
        return answer

    def _run(self, conversation_id: str) -> None:
        while not self._stop.is_set():
            self.turn(conversation_id, uuid.uuid4().hex)
            time.sleep(0.05)

    def __enter__(self) -> ChatLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)

    def since(self, moment: float) -> list[Answer]:
        with self._lock:
            return [answer for answer in self.answers if answer.started >= moment]


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


def broker_stall_proxy() -> StallProxy:
    """A StallProxy in front of this run's broker."""
    target = urlparse(settings.CELERY_BROKER_URL)
    return StallProxy(int(target.port or 6379), host=target.hostname or "127.0.0.1")


@contextlib.contextmanager
def publishing_through_a_proxy(queue: str) -> Iterator[StallProxy]:
    """For the block this process publishes through a StallProxy in front of the broker (stall it to stall
    the broker); `queue` is emptied before and after."""
    proxy = broker_stall_proxy()
    broker_purge(queue)
    try:
        with celery_broker(proxy.url_for(settings.CELERY_BROKER_URL)):
            yield proxy
    finally:
        proxy.close()
        broker_purge(queue)


def broker_messages(queue: str) -> list[dict[str, object]]:
    """The task messages waiting in one queue of this test run's broker: task name, id and kwargs each."""
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
        found.append({"task": message["headers"]["task"], "id": message["headers"]["id"], "kwargs": kwargs})
    return found


def broker_purge(queue: str) -> None:
    import redis
    from django.conf import settings

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(f"{prefix}{queue}")
