"""Scale-out proof: two web processes and two Celery workers on one Postgres and Redis; one of each killed.

Everything runs on loopback against this run's test databases and broker prefix (HUB_USE_TEST_DATABASES=1,
HUB_TEST_RUN): two `gunicorn` servers (one worker each, separate process groups) and two `celery worker`s
(tests/workers.py), with the Salesforce simulator in this process. The test shows:

- a conversation continues across processes: its turns go alternately to both servers, and a retry with the
  same Idempotency-Key against the other server returns the first answer (`Idempotent-Replayed`);
- the per-key rate limit is shared: of limit+2 calls spread over both servers the limit pass and the
  next ones get 429 on either server (the token bucket lives in Redis);
- a breaker opened in one process (this one, from failures) is seen open by both servers (their ticket
  answers say "degraded"): its state lives in Redis too;
- a worker SIGKILLed mid-sync loses nothing: the broker redelivers the unacknowledged task (acks_late) to the
  surviving worker once the visibility timeout (60 s, the settings' minimum) has passed (tests/chaos/
  worker_app.py makes the workers look for such messages every 2 s), and the hub then holds exactly the
  vendor's contacts;
- a server SIGKILLed with a turn in flight loses nothing: every acknowledged turn is stored exactly once, and
  the in-flight one, retried on the other server with its key, exactly once too;
- every ticket the chat asked for reaches the vendor exactly once (one vendor row per outbox message).

Bounded: about 90 s, most of it the visibility timeout; the deadline below fails the test instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connections

from apps.chat.models import Action, Conversation, Message
from apps.chat.services.channels import channel_create
from apps.integrations.models import (
    OutboxAttempt,
    OutboxMessage,
    OutboxStatus,
    RunStatus,
    SyncAttempt,
    SyncedRecord,
    SyncRun,
)
from apps.integrations.resilience import breaker_for
from apps.integrations.tasks import outbox_relay_due, sync_stream_task
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.chat.conftest import IssuedKey, issue_key
from tests.sync.conftest import SMALL, sf_connection, sim_rows, store_rows
from tests.workers import ROOT, Worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONTACTS = 3_000
RATE_LIMIT = 40  # per API key and hour: no token comes back during the test
DEADLINE_S = 170  # generous on a busy machine; the run itself takes about 90 s
WORKER_ENV = {
    "HUB_OUTBOX_RETRY_BASE_MS": "200",
    "HUB_OUTBOX_RETRY_MAX_SECONDS": "2",
    "HUB_OUTBOX_LEASE_SECONDS": "3",  # claims of the killed worker come free quickly
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FastRestoreWorker(Worker):
    """tests.workers.Worker on the app of tests/chaos/worker_app.py (abandoned messages swept every 2 s)."""

    def start(self) -> None:
        celery = str(Path(sys.executable).parent / "celery")
        name = f"{self.name}{os.getpid()}@%h"
        argv = [celery, "-A", "tests.chaos.worker_app", "worker", "-Q", self.queues, "--concurrency", "2",
                "--pool", "prefork", "--loglevel", "WARNING", "-n", name]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out, stderr=out)


class Web:
    """A `gunicorn` server (one worker) on this run's test databases, in a process group of its own."""

    def __init__(self, log: Path, ca_bundle: str) -> None:
        self.log = log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "hub.settings.test",
            "HUB_USE_TEST_DATABASES": "1",
            "HUB_TEST_RUN": settings.TEST_RUN,
            "HUB_HOME": str(settings.HUB_HOME),
            "HUB_CONNECTOR_CA_BUNDLE": ca_bundle,
            "HUB_CHAT_RATE_PER_KEY": f"{RATE_LIMIT}/hour",
            "HUB_CHAT_RATE_PER_TENANT": "100000/hour",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        argv = [
            gunicorn,
            "hub.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
            )

    def wait_ready(self, deadline: float) -> None:
        while True:
            assert self.proc is not None and self.proc.poll() is None, f"gunicorn exited; see {self.log}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"gunicorn not ready; see {self.log}"
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the master and its worker at once (a lost machine)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory, settings: Any) -> Iterator[SalesforceSimulator]:
    state = tmp_path_factory.mktemp("multiprocess-sim")
    simulator = SalesforceSimulator(state_dir=state, counts={**SMALL, "contacts": CONTACTS}).start()
    settings.HUB_CONNECTOR_CA_BUNDLE = simulator.ca_bundle
    yield simulator
    simulator.stop()


def api(key: IssuedKey, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.plaintext}", **headers}


def say(base: str, key: IssuedKey, conversation_id: str, text: str, idem: str) -> requests.Response:
    return requests.post(
        f"{base}/api/v1/conversations/{conversation_id}/messages",
        json={"text": text},
        headers=api(key, **{"Idempotency-Key": idem}),
        timeout=30,
    )


def _broker_state() -> dict[str, Any]:
    """The broker's bookkeeping of unacknowledged messages (for a failure message)."""
    import redis

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as client:
        return {
            "now": time.time(),
            "unacked_index": client.zrange(f"{prefix}unacked_index", 0, -1, withscores=True),
            "mutex_ttl": client.ttl(f"{prefix}unacked_mutex"),
            "sync_queue": client.llen(f"{prefix}sync"),
        }


def vendor_tickets(sim: SalesforceSimulator) -> list[str]:
    """Hub external ids of the tickets the simulator holds (duplicates kept)."""
    table = sim.tables["tickets"]
    with table.lock:
        ids = [str(row.data.get("Ext_Id__c")) for row in table.rows.values() if not row.deleted]
    return [ext for ext in ids if ext.startswith("hub-")]


def test_two_web_processes_and_two_workers_lose_nothing_when_one_of_each_dies(
    tenant_a: Tenant, sim: SalesforceSimulator, tmp_path: Path, record_property: Any
) -> None:
    started = time.monotonic()
    deadline = started + DEADLINE_S
    alias = tenant_a.home_region.db_alias
    tickets_conn = sf_connection(tenant_a, sim, name="Salesforce", page_size=100)
    broken_conn = sf_connection(tenant_a, sim, name="Salesforce (second org)")
    main = issue_key(
        channel_create(
            tenant=tenant_a,
            name="Website",
            kind="web",
            allowed_actions=Action.values,
            ticket_connection_id=tickets_conn.pk,
        )
    )
    limited = issue_key(channel_create(tenant=tenant_a, name="Kiosk", kind="web"))
    degraded = issue_key(
        channel_create(
            tenant=tenant_a,
            name="Partner portal",
            kind="web",
            allowed_actions=Action.values,
            ticket_connection_id=broken_conn.pk,
        )
    )
    ca = sim.ca_bundle or ""
    webs = [Web(tmp_path / "web1.log", ca), Web(tmp_path / "web2.log", ca)]
    workers = [
        FastRestoreWorker(
            tmp_path / "worker1.log", ca, queues="sync,outbox,default", name="mp1", env=WORKER_ENV
        ),
        FastRestoreWorker(
            tmp_path / "worker2.log", ca, queues="sync,outbox,default", name="mp2", env=WORKER_ENV
        ),
    ]
    runs = SyncRun.all_tenants.using(alias).filter(connection_id=tickets_conn.pk, stream="contacts")
    attempts = SyncAttempt.all_tenants.using(alias).filter(run__in=runs)
    records = SyncedRecord.all_tenants.using(alias).filter(connection_id=tickets_conn.pk, stream="contacts")
    messages = OutboxMessage.all_tenants.using(alias)
    acknowledged: dict[str, int] = {}  # Idempotency-Key -> reply message id, for every 200 we got
    try:
        for web in webs:
            web.start()
        workers[0].start()
        for web in webs:
            web.wait_ready(deadline)

        # A slow contacts sync that only worker 1 can take (worker 2 is not running yet).
        sim.inject(latency_ms=150)
        sync_stream_task.apply_async(
            kwargs={
                "tenant_id": tenant_a.id,
                "connection_id": str(tickets_conn.pk),
                "stream": "contacts",
                "trigger": "manual",
            }
        )
        while not attempts.filter(finished_at=None).exists():
            assert time.monotonic() < deadline, f"the sync never started; see {workers[0].log}"
            time.sleep(0.2)
        workers[1].start()

        # One conversation, turns alternating between the servers; each retried on the other one.
        web1, web2 = webs[0].url, webs[1].url
        conversation = requests.post(f"{web1}/api/v1/conversations", json={}, headers=api(main), timeout=30)
        assert conversation.status_code == 201, conversation.text
        conversation_id = conversation.json()["id"]
        for n in range(6):
            first, other = (web1, web2) if n % 2 == 0 else (web2, web1)
            text = f"Please open a ticket: printer {n} is broken" if n % 2 == 0 else "Hello!"
            reply = say(first, main, conversation_id, text, f"turn-{n}")
            assert reply.status_code == 200, reply.text
            again = say(other, main, conversation_id, text, f"turn-{n}")
            assert again.status_code == 200, again.text
            assert again.headers["Idempotent-Replayed"] == "true"
            assert again.json() == reply.json()
            acknowledged[f"turn-{n}"] = reply.json()["message_id"]
        assert messages.filter(connection_id=tickets_conn.pk).count() == 3

        # Kill worker 1 while it is in the middle of the contacts sync (some pages stored, not all).
        while not (0 < records.count() < CONTACTS and attempts.filter(finished_at=None).exists()):
            assert time.monotonic() < deadline, "the sync did not progress"
            assert not runs.filter(status=RunStatus.SUCCEEDED).exists(), "the sync finished before the kill"
            time.sleep(0.1)
        workers[0].kill()
        stored_at_kill = records.count()
        assert 0 < stored_at_kill < CONTACTS
        sim.inject(latency_ms=0)

        # The rate limit is one bucket in Redis: the limit passes over both servers, then both refuse.
        statuses = []
        for n in range(RATE_LIMIT + 2):
            base = web1 if n % 2 == 0 else web2
            response = requests.post(
                f"{base}/api/v1/conversations", json={}, headers=api(limited), timeout=30
            )
            statuses.append((base, response.status_code))
        assert [code for _, code in statuses[:RATE_LIMIT]] == [201] * RATE_LIMIT
        assert statuses[RATE_LIMIT:] == [(web1, 429), (web2, 429)]

        # A breaker opened here (failures recorded by this process) is open for both servers.
        breaker = breaker_for(broken_conn)
        for _ in range(settings.HUB_BREAKER_FAILURE_THRESHOLD):
            breaker.record_failure()
        assert breaker.state().state == "open"
        for n, base in enumerate((web1, web2)):
            start = requests.post(f"{base}/api/v1/conversations", json={}, headers=api(degraded), timeout=30)
            ticket = say(
                base, degraded, start.json()["id"], f"Please open a ticket: scanner {n} jams", f"b{n}"
            )
            action = ticket.json()["reply"]["actions"][0]
            assert (action["status"], action["degraded"]) == ("queued", True), base

        # Kill server 1 with a turn in flight, then retry that turn (same key) on server 2.
        in_flight: dict[str, Any] = {}

        def send() -> None:
            try:
                in_flight["response"] = say(
                    web1, main, conversation_id, "Please open a ticket: fax", "turn-x"
                )
            except requests.RequestException as exc:
                in_flight["error"] = exc

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.05)
        webs[0].kill()
        sender.join(timeout=30)
        retried = say(web2, main, conversation_id, "Please open a ticket: fax", "turn-x")
        assert retried.status_code == 200, retried.text
        if "response" in in_flight and in_flight["response"].status_code == 200:
            assert retried.json() == in_flight["response"].json()  # it had committed: same answer
        acknowledged["turn-x"] = retried.json()["message_id"]
        for n in range(6, 8):
            reply = say(web2, main, conversation_id, "Hello!", f"turn-{n}")
            assert reply.status_code == 200, reply.text
            acknowledged[f"turn-{n}"] = reply.json()["message_id"]

        # The contacts sync completes on worker 2 (redelivery after the visibility timeout), and the
        # outbox drains (this loop also plays beat: it queues the due relays every few seconds).
        tickets = messages.filter(connection_id=tickets_conn.pk)
        next_kick = 0.0
        while not (
            runs.filter(status=RunStatus.SUCCEEDED).exists()
            and tickets.count() == tickets.filter(status=OutboxStatus.DELIVERED).count()
        ):
            assert time.monotonic() < deadline, (
                f"not done in {DEADLINE_S} s: runs {list(runs.values_list('status', flat=True))}, "
                f"attempts {list(attempts.values_list('run_id', 'number', 'finished_at', 'error'))}, "
                f"records {records.count()}, tickets {list(tickets.values_list('status', flat=True))}; "
                f"broker {_broker_state()}; see {tmp_path}"
            )
            assert not runs.filter(status=RunStatus.FAILED, error__startswith="Retries exhausted").exists()
            if time.monotonic() >= next_kick:
                outbox_relay_due.delay()
                next_kick = time.monotonic() + 3
            time.sleep(0.5)
        assert workers[0].proc is not None and workers[0].proc.poll() is not None  # still dead
        assert workers[1].proc is not None and workers[1].proc.poll() is None
    finally:
        for web in webs:
            web.stop()
        for worker in workers:
            worker.stop()
        sim.clear_faults()
        connections.close_all()

    elapsed = time.monotonic() - started
    # No turn lost, none doubled: each acknowledged key once, its reply the one we were given.
    user_turns = Message.all_tenants.using(alias).filter(conversation_id=conversation_id, role="user")
    keys = list(user_turns.values_list("idempotency_key", flat=True))
    assert sorted(keys) == sorted(acknowledged)
    replies = dict(
        Message.all_tenants.using(alias)
        .filter(conversation_id=conversation_id, role="assistant")
        .values_list("reply_to__idempotency_key", "id")
    )
    assert replies == acknowledged
    assert Conversation.all_tenants.using(alias).get(pk=conversation_id).turns == len(acknowledged)

    # The killed run was cut short; a later run on worker 2 finished, and the store equals the vendor.
    assert runs.filter(status=RunStatus.SUCCEEDED).count() == 1
    assert attempts.count() >= 2
    vendor = sim_rows(sim)
    store = store_rows(tenant_a, tickets_conn)
    assert len(vendor) == CONTACTS
    assert store == vendor

    # Every ticket request (three turns and the in-flight one, once) was delivered exactly once: one
    # successful attempt per outbox message, and one vendor row per hub external id (a conversation's
    # ticket is upserted by its id, so its later requests update the same vendor row).
    tickets_sent = messages.filter(connection_id=tickets_conn.pk)
    assert tickets_sent.count() == 4
    delivered = OutboxAttempt.all_tenants.using(alias).filter(
        message__in=tickets_sent, error="", finished_at__isnull=False
    )
    assert sorted(delivered.values_list("message_id", flat=True)) == sorted(
        tickets_sent.values_list("id", flat=True)
    )
    ticket_ids = set(tickets_sent.values_list("external_id", flat=True))
    at_vendor = vendor_tickets(sim)
    assert sorted(ext for ext in at_vendor if ext in ticket_ids) == sorted(ticket_ids)
    assert len(at_vendor) == len(set(at_vendor))  # no duplicates of anything the hub sent
    # The tickets held back by the open breaker are in the outbox once each, never lost.
    assert messages.filter(connection_id=broken_conn.pk).count() == 2
    record_property("elapsed_s", round(elapsed))
    record_property("contacts_stored_at_kill", stored_at_kill)
