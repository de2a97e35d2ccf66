"""Celery under faults: webhooks during a broker stall; Redis paused; an outbox worker killed mid-delivery.

Real processes on this run's test databases and broker: one `celery worker` for the outbox queue and one for
the sync queue (as deployed: one per queue), the Salesforce simulator in this process (slowed, so the faults
land mid-work). Leads are captured (one outbox message each) and a contacts sync is requested; then

1. Redis is paused (SIGSTOP, a stalled broker) for a few seconds while deliveries are queued and the sync is
   part-way: workers see timeouts (quota and breaker checks fail as transient errors and are retried; a retry
   whose publish failed is picked up by the lost-sync sweep), and reconnect to the broker by themselves;
2. the outbox worker is SIGKILLed (parent and children) with a delivery in flight, and started again.

This process plays beat: `outbox_relay_due` every half second and the lost-sync sweep. At the end every
message is delivered exactly once (one vendor row per hub external id, the simulator's own count agrees),
and the sync ended with the hub holding exactly the vendor's contacts.

Bounded: about 40 s (150 s at most); the deadline fails the test instead of hanging, and Redis is resumed
whatever happens.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connections, transaction
from django.utils import timezone

from apps.core.context import tenant_context
from apps.integrations.models import OutboxAttempt, OutboxMessage, OutboxStatus, RunStatus, SyncRun
from apps.integrations.services.outbox import outbox_enqueue
from apps.integrations.services.sync import sync_request, sync_requeue_stale
from apps.integrations.services.webhooks import connection_webhook_org_set, connection_webhook_secret_rotate
from apps.integrations.tasks import outbox_relay_due
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.chaos.faults import (
    MARGIN_S,
    PUBLISH_BOUND_S,
    broker_stall_proxy,
    paused,
    service_pids,
)
from tests.fixtures.integrations import ORG_ID, sf_connection
from tests.fixtures.outbox import lead, vendor_rows
from tests.fixtures.processes import Web, Worker
from tests.fixtures.simulators import SMALL, StartSimulator
from tests.fixtures.stores import sim_rows, store_rows
from tests.webhooks.helpers import outbound_message

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LEADS = 300
CONTACTS = 2_000
PAUSE_S = 5.0
DEADLINE_S = 150  # typically ~40 s; a loaded machine can add a visibility timeout (60 s) of redelivery
HUB_SYNC_REQUEUE_SECONDS = 5
WORKER_ENV = {
    "HUB_OUTBOX_RETRY_BASE_MS": "200",
    "HUB_OUTBOX_RETRY_MAX_SECONDS": "2",
    "HUB_OUTBOX_MAX_ATTEMPTS": "1000",  # the faults must never exhaust a capture
    "HUB_OUTBOX_LEASE_SECONDS": "3",  # claims of the killed worker come free quickly
    "HUB_OUTBOX_BATCH": "5",
}


@pytest.fixture
def sim(simulator: StartSimulator, settings: Any) -> SalesforceSimulator:
    # This process plays beat: its sweep must treat a run as lost on the workers' (short) retry timescale.
    settings.HUB_SYNC_RETRY_MAX_SECONDS = 2
    settings.HUB_SYNC_REQUEUE_SECONDS = HUB_SYNC_REQUEUE_SECONDS
    return simulator(SalesforceSimulator, counts={**SMALL, "contacts": CONTACTS})


def test_outbox_and_sync_survive_a_killed_worker_and_a_paused_redis(
    tenant_a: Tenant, sim: SalesforceSimulator, tmp_path: Path
) -> None:
    connection = sf_connection(tenant_a, sim, page_size=100)  # 20 pages: the pause lands mid-sync
    alias = tenant_a.home_region.db_alias
    messages = OutboxMessage.all_tenants.using(alias).filter(connection_id=connection.pk)
    attempts = OutboxAttempt.all_tenants.using(alias).filter(message__connection_id=connection.pk)
    runs = SyncRun.all_tenants.using(alias).filter(connection_id=connection.pk, stream="contacts")
    redis = service_pids("redis")
    assert redis, "the embedded Redis server was not found"
    ca = sim.ca_bundle or ""
    outbox = Worker(tmp_path / "outbox.log", ca, queues="outbox", name="outbox", env=WORKER_ENV)
    sync = Worker(tmp_path / "sync.log", ca, queues="sync", name="sync", env=WORKER_ENV)
    sim.inject(latency_ms=150)  # slow enough that the faults land mid-delivery and mid-sync
    outbox.start()
    sync.start()
    killed = paused_during = None
    try:
        with tenant_context(tenant_a):
            with transaction.atomic(using=alias):
                sync_request(connection=connection, stream="contacts", trigger="manual")
            for n in range(LEADS):  # one capture per transaction; each commit kicks a relay
                with transaction.atomic(using=alias):
                    outbox_enqueue(
                        connection=connection, stream="leads", payload=lead(n), ordering_key=f"c{n}"
                    )
        deadline = time.monotonic() + DEADLINE_S
        while True:
            delivered = messages.filter(status=OutboxStatus.DELIVERED).count()
            run = dict(runs.values("status").first() or {})
            if delivered == LEADS and run.get("status") in (RunStatus.SUCCEEDED, RunStatus.FAILED):
                break
            assert time.monotonic() < deadline, (
                f"{delivered}/{LEADS} delivered, sync {run} in {DEADLINE_S} s; logs: {outbox.log} {sync.log}"
            )
            assert not messages.filter(status=OutboxStatus.DEAD).exists()
            if paused_during is None and run.get("status") == RunStatus.RUNNING:
                # 1. Redis stalls with the sync reading and deliveries queued (this thread uses Postgres).
                paused_during = delivered
                with paused(redis):
                    threading.Event().wait(PAUSE_S)
                continue
            if paused_during is not None and killed is None and attempts.filter(finished_at=None).exists():
                # 2. The outbox worker dies in the middle of a batch (parent and children at once).
                outbox.kill()
                killed = delivered
                outbox.start()
            outbox_relay_due.delay()  # the beat's jobs
            sync_requeue_stale()
            time.sleep(0.5)
    finally:
        outbox.stop()
        sync.stop()
        connections.close_all()

    assert paused_during is not None and paused_during < LEADS
    assert killed is not None and killed < LEADS
    leads = vendor_rows(sim, "leads")
    ids = [ext for ext, _ in leads]
    assert len(ids) == LEADS and len(set(ids)) == LEADS  # nothing delivered twice ...
    assert set(ids) == set(messages.values_list("external_id", flat=True))  # ... nor lost
    state = requests.get(f"{sim.base_url}/__admin/state", verify=sim.ca_bundle, timeout=10).json()
    assert state["counts"]["leads"] == LEADS  # the simulator's own count: nothing else was created
    assert attempts.filter(finished_at=None).exists()  # the kill cut a delivery short
    # The sync completed exactly: one successful run, and the hub holds exactly the vendor's contacts.
    assert list(runs.values_list("status", flat=True)) == [RunStatus.SUCCEEDED]
    assert store_rows(tenant_a, connection) == sim_rows(sim)


def test_webhooks_during_a_broker_stall_are_synced_once_it_returns(
    tenant_a: Tenant, sim: SalesforceSimulator, tmp_path: Path
) -> None:
    """A real gunicorn whose broker (only) is behind a stalled proxy: vendors get their Ack, nothing is lost.

    The runs are stored before the answer; once the broker is back the sweep (this process plays beat)
    publishes them and a real worker syncs each stream exactly once.
    """
    connection = sf_connection(tenant_a, sim)
    with tenant_context(tenant_a):
        token = connection_webhook_secret_rotate(connection=connection, actor=None)
        connection_webhook_org_set(connection=connection, org_id=ORG_ID, actor=None)
    alias = tenant_a.home_region.db_alias
    runs = SyncRun.all_tenants.using(alias).filter(connection_id=connection.pk)
    proxy = broker_stall_proxy()
    web = Web(tmp_path / "web.log", sync_workers=1, ca_bundle=sim.ca_bundle or "")
    web.env["CELERY_BROKER_URL"] = proxy.url_for(django_settings.CELERY_BROKER_URL)
    worker = Worker(tmp_path / "sync.log", sim.ca_bundle or "", queues="sync", name="sync", env=WORKER_ENV)
    url = f"{web.url}/hooks/salesforce/{connection.pk}/{token}/"
    bound = PUBLISH_BOUND_S + MARGIN_S
    deadline = time.monotonic() + DEADLINE_S
    try:
        web.start()
        web.wait_ready(deadline)
        worker.start()
        proxy.stall()
        for n, kind in enumerate(("Contact", "Account")):
            body = outbound_message(ORG_ID, [(f"04l5g00000AAA{n:02d}", kind, f"00{n}A")])
            started = time.monotonic()
            response = requests.post(url, data=body, headers={"Content-Type": "text/xml"}, timeout=30)
            assert response.status_code == 200, response.text  # the Ack, not a 500
            assert "<Ack>true</Ack>" in response.text
            assert time.monotonic() - started < bound
        assert sorted(runs.values_list("stream", "status")) == [
            ("accounts", RunStatus.QUEUED),
            ("contacts", RunStatus.QUEUED),
        ]
        time.sleep(1)
        assert not runs.exclude(status=RunStatus.QUEUED).exists()  # nothing reached the worker
        proxy.resume()
        while runs.filter(status=RunStatus.QUEUED).exists():
            assert time.monotonic() < deadline, f"queued runs were never synced; see {worker.log}"
            sync_requeue_stale(now=timezone.now() + timedelta(seconds=HUB_SYNC_REQUEUE_SECONDS + 1))
            time.sleep(0.5)
        while runs.exclude(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED]).exists():
            assert time.monotonic() < deadline, f"the syncs did not end; see {worker.log}"
            time.sleep(0.3)
    finally:
        proxy.close()
        web.stop()
        worker.stop()
        connections.close_all()
    assert sorted(runs.values_list("stream", "status")) == [
        ("accounts", RunStatus.SUCCEEDED),
        ("contacts", RunStatus.SUCCEEDED),
    ]
    assert store_rows(tenant_a, connection) == sim_rows(sim)
