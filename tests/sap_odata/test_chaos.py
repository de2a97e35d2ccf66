"""Chaos for the SAP OData connector (the tests/sync/test_chaos.py pattern): a real Celery worker syncs the
business partners while the simulator answers 10% of calls with 503 and 5% with 429, and worker children are
SIGKILLed at random moments. The store must end equal to the vendor: same ids, same content, no duplicates.

Half the rows share their change second with others (the seed's groups of three, then a touch of 500 rows
into one second), so every page boundary falls inside a run of equal timestamps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.tenants.models import Tenant
from connectors.sap_odata.simulator import SapODataSimulator
from tests.fixtures.integrations import demo_connection
from tests.fixtures.processes import KillPlan, Worker, sync_under_sigkills
from tests.fixtures.simulators import StartSimulator
from tests.fixtures.stores import sim_rows, store_rows, stored_counts

CONTACTS = 4_000
DEADLINE_S = 150
KILLS = 3

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_store_equals_sap_after_faults_and_sigkills(
    tenant_a: Tenant, simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = simulator(SapODataSimulator, counts={"contacts": CONTACTS, "orders": 0, "accounts": 0})
    sim.touch("contacts", ids=list(sim.tables["contacts"].rows)[1000:1500])
    connection = demo_connection(tenant_a, "sap_odata", sim.describe(), name="S/4HANA", page_size=100)
    sim.inject(latency_ms=40, errors=[{"status": 503, "rate": 0.10}, {"status": 429, "rate": 0.05 / 0.9}])
    # worker_app.py restores a killed child's unacknowledged message quickly (tests/chaos/worker_app.py).
    worker = Worker(tmp_path / "worker.log", sim.ca_bundle or "", app="tests.chaos.worker_app")
    plan = KillPlan(KILLS, seed=23, first=(0.5, 1.0), between=(0.3, 1.0))
    chaos = sync_under_sigkills(worker, tenant_a, connection, plan, deadline_s=DEADLINE_S)

    sim.clear_faults()
    assert chaos.kills == KILLS, "the sync finished before every kill: make it slower"
    assert chaos.attempts.exclude(error="").exists()  # vendor faults ended attempts too
    vendor, store = sim_rows(sim), store_rows(tenant_a, connection)
    assert len(vendor) == CONTACTS
    assert store == vendor
    assert stored_counts(tenant_a, connection) == (CONTACTS, CONTACTS)
