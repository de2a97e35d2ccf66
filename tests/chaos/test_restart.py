"""Rolling restarts under chat load lose no request: drain, graceful SIGTERM, worker replacement.

Two gunicorn servers with the production web configuration (deploy/gunicorn.conf.py: draining gthread
workers behind the admission gate) on this run's test databases, behind a tiny load balancer in this
process: round robin over the servers whose /readyz answered 200 at its last check (every 0.5 s); a request
that gets no HTTP answer (connection refused or reset) or a 503 with Retry-After is sent again, to the next
ready server, with the same Idempotency-Key, as a load balancer or a channel would. Four chat clients send
turns throughout, while:

1. server A is restarted the Kubernetes way: the drain file appears (the preStop hook), /readyz turns 503
   at once (while /healthz stays 200) and the balancer stops sending; then SIGTERM, A finishes what it has,
   exits 0 well within its graceful timeout, and starts again;
2. server B gets SIGTERM with no warning while a turn is held inside it (PostgreSQL paused for a moment):
   from then on new connections to B are refused at once (not queued unanswered), the held turn is still
   answered 200 (drained), and B exits 0; then it starts again;
3. server B gets SIGTERM again under load, nothing held: until the balancer's next check, turns sent to it
   find the connection refused and are retried on A;
4. server A replaces its worker (SIGHUP) under load.

Then: every turn was answered 200 (after retries), no 5xx other than admission's 503 with Retry-After, and
every acknowledged turn is stored exactly once with the reply the client was given.

Bounded: about 30 s; the deadline fails the test instead of hanging.
"""

from __future__ import annotations

import itertools
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connections

from apps.chat.models import Conversation, Message
from apps.tenants.models import Tenant
from tests.chaos.faults import paused, service_pids
from tests.fixtures.chat import issue_key, web_channel
from tests.fixtures.processes import Web

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENTS = 4
DEADLINE_S = 120  # generous on a busy shared machine; the run itself takes about 30 s
TURN_DEADLINE_S = 40  # a turn must be answered within this, retries included
GRACEFUL_TIMEOUT_S = 10
CHECK_INTERVAL_S = 0.5  # the balancer's readiness checks (real ones: every few seconds)


class Balancer:
    """Round robin over ready servers; retries a turn without an answer on the next one, same key."""

    def __init__(self, servers: dict[str, Web], headers: dict[str, str]) -> None:
        self.servers = servers
        self.headers = headers
        self.ready: set[str] = set(servers)
        self.lock = threading.Lock()
        self.turn = itertools.count()
        self.retries: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.stop = threading.Event()
        self.checker = threading.Thread(target=self._check, daemon=True)

    def _check(self) -> None:
        while not self.stop.is_set():
            for name, web in self.servers.items():
                try:
                    ok = requests.get(f"{web.url}/readyz", timeout=1).status_code == 200
                except requests.RequestException:
                    ok = False
                with self.lock:
                    (self.ready.add if ok else self.ready.discard)(name)
            time.sleep(CHECK_INTERVAL_S)

    def pick(self) -> str | None:
        with self.lock:
            ready = sorted(self.ready)
        return ready[next(self.turn) % len(ready)] if ready else None

    def say(self, session: requests.Session, conversation: str, text: str, key: str) -> dict[str, Any]:
        """Send one turn until a server answers it with 200; the answer's JSON."""
        give_up = time.monotonic() + TURN_DEADLINE_S
        while True:
            assert time.monotonic() < give_up, f"turn {key} not answered in {TURN_DEADLINE_S} s"
            name = self.pick()
            if name is None:
                time.sleep(0.05)
                continue
            try:
                response = session.post(
                    f"{self.servers[name].url}/api/v1/conversations/{conversation}/messages",
                    json={"text": text},
                    headers={**self.headers, "Idempotency-Key": key},
                    timeout=TURN_DEADLINE_S,
                )
            except requests.ConnectionError as exc:
                kind = "refused" if "Connection refused" in str(exc) else type(exc).__name__
                with self.lock:
                    self.retries[f"{name}:{kind}"] += 1
                session.close()  # a fresh connection for the retry
                continue
            with self.lock:
                self.statuses[response.status_code] += 1
            if response.status_code == 503 and response.headers.get("Retry-After"):
                with self.lock:
                    self.retries[f"{name}:503"] += 1
                time.sleep(0.2)
                continue
            assert response.status_code == 200, (name, response.status_code, response.text[:300])
            return dict(response.json())


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False


def _wait(condition: Any, deadline: float, what: str) -> float:
    """Wait until `condition()`; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_rolling_restarts_under_chat_load_lose_no_turn(
    tenant_a: Tenant, tmp_path: Path, record_property: Any
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    auth = issue_key(web_channel(tenant_a)).http_headers
    drain = {name: tmp_path / f"draining-{name}" for name in ("a", "b")}
    servers = {
        name: Web(
            tmp_path / f"web-{name}.log",
            options=["--workers", "1", "--graceful-timeout", str(GRACEFUL_TIMEOUT_S)],
            env={"HUB_DRAIN_FILE": str(drain[name])},
        )
        for name in ("a", "b")
    }
    a, b = servers["a"], servers["b"]
    balancer = Balancer(servers, auth)
    acknowledged: dict[str, str] = {}  # Idempotency-Key -> reply message id
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        session = requests.Session()
        try:
            created = session.post(f"{a.url}/api/v1/conversations", json={}, headers=auth, timeout=30)
            assert created.status_code == 201, created.text
            conversation = created.json()["id"]
            turn = 0
            while not stop.is_set():
                idem = uuid.uuid4().hex
                answer = balancer.say(session, conversation, f"Hello, this is turn {turn} of {n}", idem)
                with lock:
                    acknowledged[idem] = answer["message_id"]
                turn += 1
        except BaseException as exc:
            failures.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    held: dict[str, Any] = {}
    try:
        for web in servers.values():
            web.start()
        for web in servers.values():
            web.wait_ready(deadline)
        balancer.checker.start()
        for thread in threads:
            thread.start()
        _wait(lambda: len(acknowledged) >= 20, deadline, "the first turns")

        # 1. A, the Kubernetes way: drain file (preStop), readiness 503, the balancer stops sending; SIGTERM.
        drain["a"].touch()
        assert requests.get(f"{a.url}/readyz", timeout=5).status_code == 503
        assert requests.get(f"{a.url}/healthz", timeout=5).status_code == 200
        record_property(
            "a_out_of_rotation_s", round(_wait(lambda: "a" not in balancer.ready, deadline, "A out"), 2)
        )
        assert a.proc is not None
        a.signal(signal.SIGTERM)
        a.proc.wait(timeout=GRACEFUL_TIMEOUT_S + 5)
        assert a.proc.returncode == 0, f"see {a.log}"
        drain["a"].unlink()
        before = len(acknowledged)
        _wait(lambda: len(acknowledged) >= before + 10, deadline, "turns on B alone")
        a.start()
        a.wait_ready(deadline)
        _wait(lambda: "a" in balancer.ready, deadline, "A back in rotation")

        # 2. B, no warning, with a turn held inside it: PostgreSQL paused, the turn sent, then SIGTERM.
        held_conversation = requests.post(f"{b.url}/api/v1/conversations", json={}, headers=auth, timeout=30)
        assert held_conversation.status_code == 201, held_conversation.text
        held_key = uuid.uuid4().hex

        def send_held() -> None:
            try:
                held["response"] = requests.post(
                    f"{b.url}/api/v1/conversations/{held_conversation.json()['id']}/messages",
                    json={"text": "Hello from the held turn"},
                    headers={**auth, "Idempotency-Key": held_key},
                    timeout=TURN_DEADLINE_S,
                )
            except requests.RequestException as exc:
                held["error"] = exc

        sender = threading.Thread(target=send_held)
        assert b.proc is not None
        with paused(service_pids("postgres")):
            sender.start()
            time.sleep(0.5)  # accepted and waiting on the database inside the worker
            b.signal(signal.SIGTERM)
            _wait(lambda: _refused(b.port), deadline, "B to refuse new connections")
            assert b.proc.poll() is None, "B exited with a turn in flight"
        sender.join(timeout=TURN_DEADLINE_S)
        assert "response" in held, held.get("error")
        assert held["response"].status_code == 200, held["response"].text
        acknowledged[held_key] = held["response"].json()["message_id"]
        b.proc.wait(timeout=GRACEFUL_TIMEOUT_S + 5)
        assert b.proc.returncode == 0, f"see {b.log}"
        b.start()
        b.wait_ready(deadline)
        _wait(lambda: "b" in balancer.ready, deadline, "B back in rotation")

        # 3. B again, no warning and nothing held: until the balancer notices, turns sent to B find the
        # connection refused and go to A instead.
        b.signal(signal.SIGTERM)
        b.proc.wait(timeout=GRACEFUL_TIMEOUT_S + 5)
        assert b.proc.returncode == 0, f"see {b.log}"
        before = len(acknowledged)
        _wait(lambda: len(acknowledged) >= before + 10, deadline, "turns on A alone")
        b.start()
        b.wait_ready(deadline)
        _wait(lambda: "b" in balancer.ready, deadline, "B back in rotation")

        # 4. A replaces its worker under load (what max_requests does too).
        workers_before = {p.pid for p in a.workers()}
        a.signal(signal.SIGHUP)
        _wait(
            lambda: (
                {p.pid for p in a.workers()} - workers_before
                and not workers_before & {p.pid for p in a.workers()}
            ),
            deadline,
            "A's new worker",
        )
        a.wait_ready(deadline)
        before = len(acknowledged)
        _wait(lambda: len(acknowledged) >= before + 20, deadline, "turns after the worker replacement")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=TURN_DEADLINE_S + 5)
        balancer.stop.set()
        for web in servers.values():
            web.stop()
        connections.close_all()

    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert set(balancer.statuses) <= {200, 503}, balancer.statuses
    # Every acknowledged turn stored once, with the reply its client was given; nothing else stored.
    alias = tenant_a.home_region.db_alias
    conversations = Conversation.all_tenants.using(alias).filter(tenant_id=tenant_a.id)
    user_turns = Message.all_tenants.using(alias).filter(conversation__in=conversations, role="user")
    keys = list(user_turns.values_list("idempotency_key", flat=True))
    assert sorted(keys) == sorted(acknowledged)
    replies = dict(
        Message.all_tenants.using(alias)
        .filter(conversation__in=conversations, role="assistant")
        .values_list("reply_to__idempotency_key", "id")
    )
    assert {k: str(v) for k, v in replies.items()} == {k: str(v) for k, v in acknowledged.items()}
    record_property("turns", len(acknowledged))
    assert any(k.startswith("b:") for k in balancer.retries), balancer.retries  # step 3 retried
    record_property("retries", dict(balancer.retries))
