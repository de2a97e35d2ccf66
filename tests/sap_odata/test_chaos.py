"""Chaos for the SAP OData connector (the tests/sync/test_chaos.py pattern): a real Celery worker syncs the
business partners while the simulator answers 10% of calls with 503 and 5% with 429, and worker children are
SIGKILLed at random moments. The store must end equal to the vendor: same ids, same content, no duplicates.

Half the rows share their change second with others (the seed's groups of three, then a touch of 500 rows
into one second), so every page boundary falls inside a run of equal timestamps.
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

from apps.core.context import tenant_context
from apps.integrations.conf import build_connector
from apps.integrations.demo import demo_config
from apps.integrations.models import Connection, RunStatus, SyncAttempt, SyncedRecord, SyncRun
from apps.integrations.services.sync import canonical_json
from apps.integrations.tasks import sync_stream_task
from apps.tenants.models import Tenant
from connectors.sap_odata.simulator import SapODataSimulator
from tests.fixtures.integrations import demo_connection
from tests.fixtures.processes import Worker
from tests.fixtures.simulators import StartSimulator

CONTACTS = 4_000
DEADLINE_S = 150
KILLS = 3

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def vendor_rows(sim: SapODataSimulator) -> dict[str, tuple[bool, str]]:
    settings, credentials = demo_config("sap_odata", sim.describe())
    connection = Connection(kind="sap_odata", settings=settings)
    connection.set_secrets(credentials)
    return {
        r.external_id: (r.deleted, canonical_json(r.raw))
        for r in build_connector(connection).read("contacts")
    }


def store_rows(tenant: Tenant, connection: Connection) -> dict[str, tuple[bool, str]]:
    with tenant_context(tenant):
        rows = SyncedRecord.objects.filter(connection=connection, stream="contacts").values_list(
            "external_id", "deleted", "raw"
        )
        return {ext: (deleted, canonical_json(raw)) for ext, deleted, raw in rows}


def test_store_equals_sap_after_faults_and_sigkills(
    tenant_a: Tenant, simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = simulator(SapODataSimulator, counts={"contacts": CONTACTS, "orders": 0, "accounts": 0})
    sim.touch("contacts", ids=list(sim.tables["contacts"].rows)[1000:1500])
    connection = demo_connection(tenant_a, "sap_odata", sim.describe(), name="S/4HANA", page_size=100)
    sim.inject(latency_ms=40, errors=[{"status": 503, "rate": 0.10}, {"status": 429, "rate": 0.05 / 0.9}])
    # worker_app.py restores a killed child's unacknowledged message quickly (tests/chaos/worker_app.py).
    worker = Worker(tmp_path / "worker.log", sim.ca_bundle or "", app="tests.chaos.worker_app")
    worker.start()
    alias = tenant_a.home_region.db_alias
    runs = SyncRun.all_tenants.using(alias).filter(connection_id=connection.pk)
    attempts = SyncAttempt.all_tenants.using(alias).filter(run__in=runs)
    kills = 0
    last_kill = timezone.now() - timedelta(days=1)
    rng = random.Random(23)  # reproducible chaos
    try:
        kwargs = {"tenant_id": tenant_a.id, "connection_id": str(connection.pk), "stream": "contacts"}
        sync_stream_task.apply_async(kwargs={**kwargs, "trigger": "manual"})
        deadline = time.monotonic() + DEADLINE_S
        next_kill = time.monotonic() + rng.uniform(0.5, 1.0)
        while not runs.filter(status=RunStatus.SUCCEEDED).exists():
            assert time.monotonic() < deadline, (
                f"no successful run in {DEADLINE_S} s; see {worker.log}",
                list(runs.values("status", "error")),
            )
            assert not runs.filter(error__startswith="Retries exhausted").exists(), list(runs.values())
            worker.ensure_running()
            open_now = attempts.filter(finished_at=None, started_at__gt=last_kill).exists()
            if kills < KILLS and open_now and time.monotonic() >= next_kill:
                for child in worker.children():
                    os.kill(child.pid, signal.SIGKILL)
                kills += 1
                last_kill = timezone.now()
                next_kill = time.monotonic() + rng.uniform(0.3, 1.0)
            time.sleep(0.1)
    finally:
        worker.stop()
        connections.close_all()

    sim.clear_faults()
    assert kills == KILLS, "the sync finished before every kill: make it slower"
    assert attempts.exclude(error="").exists()  # vendor faults ended attempts too
    vendor, store = vendor_rows(sim), store_rows(tenant_a, connection)
    assert len(vendor) == CONTACTS
    assert store == vendor
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT external_id) FROM integrations_syncedrecord "
            "WHERE connection_id = %s AND stream = 'contacts'",
            [connection.pk],
        )
        assert cursor.fetchone() == (CONTACTS, CONTACTS)
