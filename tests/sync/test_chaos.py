"""Chaos: a real Celery worker syncs 50,000 contacts while the vendor fails and workers are SIGKILLed.

The worker is a separate `celery worker` process (prefork, two children) on this run's Redis and test
databases. The simulator answers 10% of calls with 503 and 5% with 429; meanwhile the test kills worker
children with SIGKILL at random moments (and would restart the whole worker if its parent died). At the
end the hub's store must equal the vendor's data exactly: same ids, same content, no duplicates.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.integrations import sf_connection
from tests.fixtures.processes import KillPlan, Worker, sync_under_sigkills
from tests.fixtures.simulators import SMALL, StartSimulator
from tests.fixtures.stores import content_digest, sim_rows, store_rows, stored_counts

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
    plan = KillPlan(KILLS, seed=6)
    chaos = sync_under_sigkills(worker, tenant_a, connection, plan, deadline_s=DEADLINE_S)
    attempts = chaos.attempts
    chaos_sim.clear_faults()
    assert chaos.kills == KILLS
    # Attempts cut short by SIGKILL never finish; vendor faults end attempts with an error.
    assert (
        chaos.hits >= KILLS - 1
    )  # a kill can race an attempt that was just finishing; the rest hit mid-work
    assert attempts.filter(finished_at=None).count() >= chaos.hits
    assert attempts.exclude(error="").exists()
    vendor = sim_rows(chaos_sim)
    store = store_rows(tenant_a, connection)
    assert len(vendor) == CONTACTS
    assert len(store) == len(vendor)
    assert content_digest(store) == content_digest(vendor)
    assert store == vendor
    assert stored_counts(tenant_a, connection) == (CONTACTS, CONTACTS)
