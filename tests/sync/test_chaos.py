"""Chaos: a real Celery worker syncs 50,000 contacts while the vendor fails and workers are SIGKILLed.

The worker is a separate `celery worker` process (prefork, two children) on this run's Redis and test
databases. The simulator answers 10% of calls with 503 and 5% with 429; meanwhile the test kills worker
children with SIGKILL at random moments (and would restart the whole worker if its parent died). At the
end the hub's store must equal the vendor's data exactly: same ids, same content, no duplicates.
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone

from apps.integrations.models import RunStatus, SyncAttempt, SyncRun
from apps.integrations.tasks import sync_stream_task
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.integrations import sf_connection
from tests.fixtures.processes import Worker
from tests.fixtures.simulators import SMALL, StartSimulator
from tests.fixtures.stores import content_digest, sim_rows, store_rows

CONTACTS = 50_000
DEADLINE_S = 150
KILLS = 5

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chaos_sim(simulator: StartSimulator) -> SalesforceSimulator:
    return simulator(SalesforceSimulator, counts={**SMALL, "contacts": CONTACTS})


def test_store_equals_vendor_after_faults_and_sigkills(
    tenant_a: Tenant, chaos_sim: SalesforceSimulator, tmp_path: Path
) -> None:
    connection = sf_connection(tenant_a, chaos_sim, page_size=500)
    # 10% 503 and 5% 429 of all calls (the second rule only sees calls the first one let through).
    chaos_sim.inject(
        latency_ms=15, errors=[{"status": 503, "rate": 0.10}, {"status": 429, "rate": 0.05 / 0.9}]
    )
    worker = Worker(tmp_path / "worker.log", chaos_sim.ca_bundle or "")
    worker.start()
    alias = tenant_a.home_region.db_alias
    runs = SyncRun.all_tenants.using(alias).filter(connection_id=connection.pk)
    attempts = SyncAttempt.all_tenants.using(alias).filter(run__in=runs)
    kills = 0
    hits = 0  # kills that cut an attempt short (an attempt started after the previous kill, still open)
    last_kill = timezone.now() - timedelta(days=1)
    rng = random.Random(6)  # reproducible chaos
    try:
        kwargs = {"tenant_id": tenant_a.id, "connection_id": str(connection.pk), "stream": "contacts"}
        sync_stream_task.apply_async(kwargs={**kwargs, "trigger": "manual"})
        deadline = time.monotonic() + DEADLINE_S
        next_kill = time.monotonic() + rng.uniform(0.5, 1.5)
        while not runs.filter(status=RunStatus.SUCCEEDED).exists():
            assert time.monotonic() < deadline, f"no successful run in {DEADLINE_S} s; see {worker.log}"
            assert not runs.filter(error__startswith="Retries exhausted").exists(), list(runs.values())
            worker.ensure_running()
            # Only attempts started since the last kill: a killed attempt stays open forever.
            open_now = list(
                attempts.filter(finished_at=None, started_at__gt=last_kill).values_list("pk", flat=True)
            )
            if kills < KILLS and open_now and time.monotonic() >= next_kill:
                # Every child: the one running the sync dies mid-batch, wherever it is.
                for child in worker.children():
                    os.kill(child.pid, signal.SIGKILL)
                kills += 1
                last_kill = timezone.now()
                time.sleep(0.2)
                # A hit if that attempt is still open after its process died (not finished just before).
                hits += attempts.filter(pk__in=open_now, finished_at=None).exists()
                next_kill = time.monotonic() + rng.uniform(0.3, 1.5)
            time.sleep(0.1)
    finally:
        worker.stop()
        connections.close_all()

    chaos_sim.clear_faults()
    assert kills == KILLS
    # Attempts cut short by SIGKILL never finish; vendor faults end attempts with an error.
    assert hits >= KILLS - 1  # a kill can race an attempt that was just finishing; the rest hit mid-work
    assert attempts.filter(finished_at=None).count() >= hits
    assert attempts.exclude(error="").exists()
    vendor = sim_rows(chaos_sim)
    store = store_rows(tenant_a, connection)
    assert len(vendor) == CONTACTS
    assert len(store) == len(vendor)
    assert content_digest(store) == content_digest(vendor)
    assert store == vendor
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT external_id) FROM integrations_syncedrecord "
            "WHERE connection_id = %s AND stream = 'contacts'",
            [connection.pk],
        )
        assert cursor.fetchone() == (CONTACTS, CONTACTS)
