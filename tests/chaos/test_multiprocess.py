"""Scale-out proof: two web processes and two Celery workers on one Postgres and Redis; one of each killed.

One cluster for the module (the `cluster` fixture): two `gunicorn` servers (one sync worker each, separate
process groups) and two `celery worker`s (tests/fixtures/processes.py) on this run's test databases and broker
prefix (HUB_USE_TEST_DATABASES=1, HUB_TEST_RUN), with the Salesforce simulator in this process. Each scenario
is a test of its own, so a failure names the property that broke; each leaves the cluster whole (a killed
process is started again), and `heal` restores it before the next if a scenario failed half-way:

- a conversation continues across processes: its turns go alternately to both servers, a retry with the same
  Idempotency-Key against the other server returns the first answer (`Idempotent-Replayed`), and every ticket
  the chat asked for reaches the vendor exactly once (one vendor row per hub external id);
- the per-key rate limit is shared: of limit+2 calls spread over both servers the limit pass and the next
  ones get 429 on either server (the token bucket lives in Redis);
- a breaker opened in one process (this one, from failures) is seen open by both servers (their ticket
  answers say "degraded"): its state lives in Redis too; the held-back tickets wait in the outbox, once each;
- a worker SIGKILLed mid-sync loses nothing: the broker redelivers the unacknowledged task (acks_late) to the
  surviving worker once the visibility timeout (60 s, the settings' minimum) has passed (tests/chaos/
  worker_app.py makes the workers look for such messages every 2 s), and the hub then holds exactly the
  vendor's contacts;
- a server SIGKILLed with a turn in flight loses nothing: every acknowledged turn is stored exactly once, the
  in-flight one, retried on the other server with its key, exactly once too, and its ticket reaches the
  vendor once.

The tests share the cluster's processes, database rows and Redis state: the module fixture writes the rows
outside pytest-django's per-test transactions and flushes the databases (and this run's Redis keys) when the
module ends, as a transactional test does after itself; the scenarios themselves only read.

Bounded: about 90 s, most of it the visibility timeout; the deadlines fail a scenario instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.db.models import QuerySet
from django.test import override_settings

from apps.chat.models import Conversation, Message
from apps.chat.services.channels import channel_create
from apps.integrations.models import (
    Connection,
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
from apps.tenants.services import region_sync
from connectors.salesforce.simulator import SalesforceSimulator
from tests.factories import TenantFactory
from tests.fixtures.cache import run_keys_delete
from tests.fixtures.chat import IssuedKey, issue_key, web_channel
from tests.fixtures.integrations import sf_connection
from tests.fixtures.outbox import vendor_rows
from tests.fixtures.processes import Web, Worker
from tests.fixtures.simulators import SMALL, SimulatorPool
from tests.fixtures.stores import sim_rows, store_rows

# The tests themselves only read (in a transaction each, as usual); the cluster's rows are written and flushed
# by the module fixture.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]

CONTACTS = 3_000
RATE_LIMIT = 40  # per API key and hour: no token comes back during the test
START_S = 60  # to start (or restart) the processes, generous on a busy machine
SCENARIO_S = 60  # per scenario, but the worker kill's
REDELIVERY_S = 150  # the worker kill's: the visibility timeout (60 s) and the rest of the sync
WORKER_ENV = {
    "HUB_OUTBOX_RETRY_BASE_MS": "200",
    "HUB_OUTBOX_RETRY_MAX_SECONDS": "2",
    "HUB_OUTBOX_LEASE_SECONDS": "3",  # claims of the killed worker come free quickly
}


@dataclass
class Cluster:
    """The module's processes and the rows they serve: tenant A, its connections and channel keys."""

    tenant: Tenant
    sim: SalesforceSimulator
    tickets_conn: Connection  # where the main channel's tickets go; the contacts sync reads it
    broken_conn: Connection  # the degraded channel's ticket connection, whose breaker a scenario opens
    main: IssuedKey  # every action allowed, tickets to `tickets_conn`
    limited: IssuedKey  # the rate-limit scenario's only
    degraded: IssuedKey  # tickets to `broken_conn`
    webs: list[Web]
    workers: list[Worker]
    logs: Path

    @property
    def alias(self) -> str:
        return self.tenant.home_region.db_alias

    def messages(self) -> QuerySet[OutboxMessage]:
        return OutboxMessage.all_tenants.using(self.alias).all()

    def tickets_of(self, conversation_id: str) -> QuerySet[OutboxMessage]:
        """The outbox messages of one conversation's ticket requests (the outbox orders by conversation)."""
        return self.messages().filter(
            connection_id=self.tickets_conn.pk, ordering_key__startswith=f"conversation:{conversation_id}:"
        )

    def start(self, deadline: float) -> None:
        """Start what is not running (all of it at first; after a scenario, what it killed or stopped)."""
        starting = [web for web in self.webs if web.proc is None or web.proc.poll() is not None]
        for web in starting:
            web.start()
        for worker in self.workers:
            if worker.proc is None or worker.proc.poll() is not None:
                worker.start()
        for web in starting:
            web.wait_ready(deadline)

    def stop(self) -> None:
        for web in self.webs:
            web.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def cluster(
    django_db_setup: None,
    django_db_blocker: Any,
    simulator_state: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("multiprocess")
    simulators = SimulatorPool(simulator_state)
    cluster: Cluster | None = None
    with django_db_blocker.unblock():
        assert all(
            connections[alias].settings_dict["NAME"].startswith("test_") for alias in settings.DATABASES
        )
        try:
            sim = simulators.start(SalesforceSimulator, counts={**SMALL, "contacts": CONTACTS})
            with override_settings(HUB_CONNECTOR_CA_BUNDLE=sim.ca_bundle):
                eu = next(region for region in region_sync() if region.code == "eu")
                tenant = TenantFactory.create(slug="tenant-a", name="Tenant A", home_region=eu)
                tickets_conn = sf_connection(tenant, sim, name="Salesforce", page_size=100)
                broken_conn = sf_connection(tenant, sim, name="Salesforce (second org)")
                ca = sim.ca_bundle or ""
                web_env = {"HUB_CHAT_RATE_PER_KEY": f"{RATE_LIMIT}/hour"}
                cluster = Cluster(
                    tenant=tenant,
                    sim=sim,
                    tickets_conn=tickets_conn,
                    broken_conn=broken_conn,
                    main=issue_key(web_channel(tenant, ticket_connection_id=tickets_conn.pk)),
                    limited=issue_key(channel_create(tenant=tenant, name="Kiosk", kind="web")),
                    degraded=issue_key(
                        web_channel(tenant, name="Partner portal", ticket_connection_id=broken_conn.pk)
                    ),
                    webs=[
                        Web(logs / f"web{n}.log", sync_workers=1, ca_bundle=ca, env=web_env) for n in (1, 2)
                    ],
                    workers=[
                        Worker(
                            logs / f"worker{n}.log",
                            ca,
                            queues="sync,outbox,default",
                            name=f"mp{n}",
                            app="tests.chaos.worker_app",
                            env=WORKER_ENV,
                        )
                        for n in (1, 2)
                    ],
                    logs=logs,
                )
                cluster.start(time.monotonic() + START_S)
                yield cluster
        finally:
            if cluster is not None:
                cluster.stop()
            simulators.stop()
            connections.close_all()
            for alias in settings.DATABASES:  # what a transactional test does after itself
                call_command("flush", verbosity=0, interactive=False, database=alias, reset_sequences=False)
            run_keys_delete()


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """The scenarios share the cluster's Redis state (broker queues and bindings): cleared at the end."""


@pytest.fixture(autouse=True)
def healed(cluster: Cluster) -> Cluster:
    """The cluster whole before each scenario (a failed one may have left a process down or a fault on)."""
    cluster.sim.clear_faults()
    cluster.start(time.monotonic() + START_S)
    return cluster


def say(base: str, key: IssuedKey, conversation_id: str, text: str, idem: str) -> requests.Response:
    return requests.post(
        f"{base}/api/v1/conversations/{conversation_id}/messages",
        json={"text": text},
        headers={**key.http_headers, "Idempotency-Key": idem},
        timeout=30,
    )


def start_conversation(base: str, key: IssuedKey) -> str:
    response = requests.post(f"{base}/api/v1/conversations", json={}, headers=key.http_headers, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def assert_turns_stored_once(cluster: Cluster, conversation_id: str, acknowledged: dict[str, int]) -> None:
    """Each acknowledged Idempotency-Key stored once, its reply the one the client was given; nothing else."""
    turns = Message.all_tenants.using(cluster.alias).filter(conversation_id=conversation_id)
    keys = list(turns.filter(role="user").values_list("idempotency_key", flat=True))
    assert sorted(keys) == sorted(acknowledged)
    replies = dict(turns.filter(role="assistant").values_list("reply_to__idempotency_key", "id"))
    assert replies == acknowledged
    assert Conversation.all_tenants.using(cluster.alias).get(pk=conversation_id).turns == len(acknowledged)


def assert_tickets_delivered_once(
    cluster: Cluster, tickets: QuerySet[OutboxMessage], deadline: float
) -> None:
    """Relay until `tickets` are delivered (this loop plays beat); then one successful attempt per message and
    one vendor row per hub external id (a conversation's ticket is upserted by its id)."""
    next_kick = 0.0
    while tickets.exclude(status=OutboxStatus.DELIVERED).exists():
        assert time.monotonic() < deadline, (
            f"tickets not delivered: {list(tickets.values_list('status', flat=True))}; see {cluster.logs}"
        )
        if time.monotonic() >= next_kick:
            outbox_relay_due.delay()
            next_kick = time.monotonic() + 3
        time.sleep(0.5)
    delivered = OutboxAttempt.all_tenants.using(cluster.alias).filter(
        message__in=tickets, error="", finished_at__isnull=False
    )
    assert sorted(delivered.values_list("message_id", flat=True)) == sorted(
        tickets.values_list("id", flat=True)
    )
    ticket_ids = set(tickets.values_list("external_id", flat=True))
    at_vendor = [ext for ext, _data in vendor_rows(cluster.sim, "tickets")]
    assert sorted(ext for ext in at_vendor if ext in ticket_ids) == sorted(ticket_ids)
    assert len(at_vendor) == len(set(at_vendor))  # no duplicates of anything the hub sent


def _broker_state() -> dict[str, Any]:
    """The broker's bookkeeping of unacknowledged messages (for a failure message)."""
    import redis

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as client:
        return {
            "now": time.time(),
            "unacked_index": client.zrange(f"{prefix}unacked_index", 0, -1, withscores=True),
            "mutex_ttl": client.ttl(f"{prefix}unacked_mutex"),
            "sync_queues": {key.decode(): client.llen(key) for key in client.scan_iter(f"{prefix}sync*")},
        }


def test_a_conversation_continues_across_web_processes(healed: Cluster) -> None:
    deadline = time.monotonic() + SCENARIO_S
    web1, web2 = (web.url for web in healed.webs)
    conversation_id = start_conversation(web1, healed.main)
    acknowledged: dict[str, int] = {}
    for n in range(6):
        first, other = (web1, web2) if n % 2 == 0 else (web2, web1)
        text = f"Please open a ticket: printer {n} is broken" if n % 2 == 0 else "Hello!"
        reply = say(first, healed.main, conversation_id, text, f"turn-{n}")
        assert reply.status_code == 200, reply.text
        again = say(other, healed.main, conversation_id, text, f"turn-{n}")
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == reply.json()
        acknowledged[f"turn-{n}"] = reply.json()["message_id"]
    assert_turns_stored_once(healed, conversation_id, acknowledged)
    tickets = healed.tickets_of(conversation_id)
    assert tickets.count() == 3
    assert_tickets_delivered_once(healed, tickets, deadline)


def test_the_rate_limit_is_one_bucket_for_every_web_process(healed: Cluster) -> None:
    web1, web2 = (web.url for web in healed.webs)
    statuses = []
    for n in range(RATE_LIMIT + 2):
        base = web1 if n % 2 == 0 else web2
        response = requests.post(
            f"{base}/api/v1/conversations", json={}, headers=healed.limited.http_headers, timeout=30
        )
        statuses.append((base, response.status_code))
    assert [code for _, code in statuses[:RATE_LIMIT]] == [201] * RATE_LIMIT
    assert statuses[RATE_LIMIT:] == [(web1, 429), (web2, 429)]


def test_a_breaker_opened_in_one_process_is_open_in_every_web_process(healed: Cluster) -> None:
    breaker = breaker_for(healed.broken_conn)
    for _ in range(settings.HUB_BREAKER_FAILURE_THRESHOLD):
        breaker.record_failure()
    assert breaker.state().state == "open"
    for n, web in enumerate(healed.webs):
        conversation_id = start_conversation(web.url, healed.degraded)
        ticket = say(
            web.url, healed.degraded, conversation_id, f"Please open a ticket: scanner {n} jams", f"b{n}"
        )
        action = ticket.json()["reply"]["actions"][0]
        assert (action["status"], action["degraded"]) == ("queued", True), web.url
    # The tickets held back by the open breaker are in the outbox once each, never lost.
    assert healed.messages().filter(connection_id=healed.broken_conn.pk).count() == 2


def test_a_worker_killed_mid_sync_loses_no_record(healed: Cluster, record_property: Any) -> None:
    deadline = time.monotonic() + REDELIVERY_S
    first, second = healed.workers
    conn, sim = healed.tickets_conn, healed.sim
    runs = SyncRun.all_tenants.using(healed.alias).filter(connection_id=conn.pk, stream="contacts")
    attempts = SyncAttempt.all_tenants.using(healed.alias).filter(run__in=runs)
    records = SyncedRecord.all_tenants.using(healed.alias).filter(connection_id=conn.pk, stream="contacts")
    # A slow contacts sync that only the first worker can take (the second is stopped until it has).
    second.stop()
    sim.inject(latency_ms=150)
    kwargs = {"tenant_id": healed.tenant.id, "connection_id": str(conn.pk), "stream": "contacts"}
    sync_stream_task.apply_async(kwargs={**kwargs, "trigger": "manual"})
    while not attempts.filter(finished_at=None).exists():
        assert time.monotonic() < deadline, f"the sync never started; see {first.log}"
        time.sleep(0.2)
    second.start()

    # Kill the first worker in the middle of the sync (some pages stored, not all).
    while not (0 < records.count() < CONTACTS and attempts.filter(finished_at=None).exists()):
        assert time.monotonic() < deadline, "the sync did not progress"
        assert not runs.filter(status=RunStatus.SUCCEEDED).exists(), "the sync finished before the kill"
        time.sleep(0.1)
    first.kill()
    stored_at_kill = records.count()
    assert 0 < stored_at_kill < CONTACTS
    sim.inject(latency_ms=0)

    # The sync completes on the second worker (redelivery after the visibility timeout).
    while not runs.filter(status=RunStatus.SUCCEEDED).exists():
        assert time.monotonic() < deadline, (
            f"not done in {REDELIVERY_S} s: runs {list(runs.values_list('status', flat=True))}, "
            f"attempts {list(attempts.values_list('run_id', 'number', 'finished_at', 'error'))}, "
            f"records {records.count()}; worker exits {[w.proc and w.proc.poll() for w in healed.workers]}; "
            f"broker {_broker_state()}; see {healed.logs}"
        )
        assert not runs.filter(status=RunStatus.FAILED, error__startswith="Retries exhausted").exists()
        time.sleep(0.5)
    assert first.proc is not None and first.proc.poll() is not None  # still dead
    assert second.proc is not None and second.proc.poll() is None

    # The killed run was cut short, a later run on the second worker finished; the store equals the vendor.
    assert runs.filter(status=RunStatus.SUCCEEDED).count() == 1
    assert attempts.count() >= 2
    vendor = sim_rows(sim)
    assert len(vendor) == CONTACTS
    assert store_rows(healed.tenant, conn) == vendor
    record_property("contacts_stored_at_kill", stored_at_kill)


def test_a_web_process_killed_mid_turn_loses_no_turn(healed: Cluster) -> None:
    deadline = time.monotonic() + SCENARIO_S
    web1, web2 = (web.url for web in healed.webs)
    conversation_id = start_conversation(web1, healed.main)
    acknowledged: dict[str, int] = {}
    reply = say(web1, healed.main, conversation_id, "Hello!", "turn-0")
    assert reply.status_code == 200, reply.text
    acknowledged["turn-0"] = reply.json()["message_id"]

    # Kill server 1 with a turn in flight, then retry that turn (same key) on server 2.
    in_flight: dict[str, Any] = {}

    def send() -> None:
        try:
            in_flight["response"] = say(
                web1, healed.main, conversation_id, "Please open a ticket: fax", "turn-x"
            )
        except requests.RequestException as exc:
            in_flight["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.05)
    healed.webs[0].kill()
    sender.join(timeout=30)
    retried = say(web2, healed.main, conversation_id, "Please open a ticket: fax", "turn-x")
    assert retried.status_code == 200, retried.text
    if "response" in in_flight and in_flight["response"].status_code == 200:
        assert retried.json() == in_flight["response"].json()  # it had committed: same answer
    acknowledged["turn-x"] = retried.json()["message_id"]
    for n in range(1, 3):
        reply = say(web2, healed.main, conversation_id, "Hello!", f"turn-{n}")
        assert reply.status_code == 200, reply.text
        acknowledged[f"turn-{n}"] = reply.json()["message_id"]

    assert_turns_stored_once(healed, conversation_id, acknowledged)
    tickets = healed.tickets_of(conversation_id)
    assert tickets.count() == 1  # the in-flight request, once, however often it was sent
    assert_tickets_delivered_once(healed, tickets, deadline)
