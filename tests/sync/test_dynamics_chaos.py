"""Chaos for Dynamics 365: a real Celery worker syncs 20,000 contacts by change tracking while Dataverse
answers 10% of calls with 503 and 5% with 429 (service protection, Retry-After) and worker children are
SIGKILLed. Each stored batch carries the next-link it resumes from, so at the end the store equals the
vendor exactly; a second run then reads the delta link: changed rows and deletions, nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db.models import Q

from apps.core.context import tenant_context
from apps.integrations.conf import build_connector
from apps.integrations.models import Connection, RunStatus
from apps.integrations.services.sync import canonical_json, sync_stream
from apps.tenants.models import Tenant
from connectors.dynamics.simulator import DynamicsSimulator
from tests.fixtures.integrations import demo_connection
from tests.fixtures.processes import KillPlan, Worker, sync_under_sigkills
from tests.fixtures.simulators import SMALL, StartSimulator
from tests.fixtures.stores import Rows, content_digest, store_rows

CONTACTS = 20_000
DEADLINE_S = 240  # two cores shared with other suites: leave room
KILLS = 4

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chaos_sim(simulator: StartSimulator) -> DynamicsSimulator:
    return simulator(DynamicsSimulator, counts={**SMALL, "contacts": CONTACTS})


def vendor_rows(tenant: Tenant, connection: Connection) -> Rows:
    """What Dataverse holds now, read in full through the connector (no cursor)."""
    with tenant_context(tenant):
        connector = build_connector(connection)
    return {r.external_id: (r.deleted, canonical_json(r.raw)) for r in connector.read("contacts")}


def test_store_equals_dataverse_after_faults_sigkills_and_a_delta(
    tenant_a: Tenant, chaos_sim: DynamicsSimulator, tmp_path: Path
) -> None:
    connection = demo_connection(
        tenant_a, "dynamics365", chaos_sim.describe(), name="Dynamics", page_size=500
    )
    chaos_sim.inject(
        latency_ms=10, errors=[{"status": 503, "rate": 0.10}, {"status": 429, "rate": 0.05 / 0.9}]
    )
    worker = Worker(tmp_path / "worker.log", chaos_sim.ca_bundle or "")
    # A run the worker's death failed is retried; any other failure is not expected.
    failed = Q(status=RunStatus.FAILED) & ~Q(error__contains="worker")
    plan = KillPlan(KILLS, seed=23, between=(0.3, 1.2))
    chaos = sync_under_sigkills(worker, tenant_a, connection, plan, deadline_s=DEADLINE_S, failed=failed)

    chaos_sim.clear_faults()
    assert chaos.kills == KILLS
    assert chaos.attempts.exclude(error="").exists()  # the faults did reach the engine
    vendor = vendor_rows(tenant_a, connection)
    store = store_rows(tenant_a, connection)
    assert len(vendor) == len(store) == CONTACTS
    assert content_digest(store) == content_digest(vendor)

    # The stored cursor is the delta link: the next run reads only what changed, deletions included.
    changed = chaos_sim.touch("contacts", count=5)
    deleted = list(chaos_sim.tables["contacts"].rows)[100:103]
    for row_id in deleted:
        chaos_sim.delete("contacts", row_id)
    with tenant_context(tenant_a):
        run = sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual")
    assert run is not None and run.status == RunStatus.SUCCEEDED
    assert run.read == len(set(changed) | set(deleted))
    store = store_rows(tenant_a, connection)
    assert {ext for ext, (gone, _) in store.items() if gone} == set(deleted)
    live = {ext: row for ext, row in store.items() if not row[0]}
    assert live == vendor_rows(tenant_a, connection)
