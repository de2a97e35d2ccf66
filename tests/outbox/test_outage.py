"""The issue's test: 1,000 lead captures during a full vendor outage are all delivered exactly once.

A real Celery worker (separate process, queue "outbox") runs the relay against this run's databases and
broker. The leads are captured while the Salesforce simulator answers every call with 503; the on-commit
kicks fail and open the breaker, nothing reaches the vendor. Then the outage is lifted, and while the
relay delivers, the whole worker is SIGKILLed once and restarted. At the end the simulator holds exactly
1,000 new leads, one per hub external id, and every message is `delivered`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from django.db import connections, transaction

from apps.core.context import tenant_context
from apps.integrations.models import OutboxAttempt, OutboxMessage, OutboxStatus
from apps.integrations.services.outbox import outbox_enqueue
from apps.integrations.tasks import outbox_relay_due
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.integrations import sf_connection
from tests.fixtures.outbox import lead, vendor_rows
from tests.fixtures.processes import Worker

LEADS = 1_000
DEADLINE_S = 150

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {
    "HUB_OUTBOX_RETRY_BASE_MS": "200",
    "HUB_OUTBOX_RETRY_MAX_SECONDS": "2",
    "HUB_OUTBOX_MAX_ATTEMPTS": "1000",  # an outage must never exhaust a capture
    "HUB_OUTBOX_LEASE_SECONDS": "3",  # claims of the killed worker come free quickly
    "HUB_OUTBOX_BATCH": "20",
}


def test_leads_captured_during_an_outage_are_delivered_exactly_once(
    tenant_a: Tenant, sf: SalesforceSimulator, tmp_path: Path
) -> None:
    connection = sf_connection(tenant_a, sf)
    alias = tenant_a.home_region.db_alias
    messages = OutboxMessage.all_tenants.using(alias).filter(connection_id=connection.pk)
    attempts = OutboxAttempt.all_tenants.using(alias).filter(message__connection_id=connection.pk)
    sf.inject(outage="503")
    worker = Worker(
        tmp_path / "worker.log", sf.ca_bundle or "", queues="outbox", name="outbox", env=WORKER_ENV
    )
    worker.start()
    killed_at: int | None = None
    try:
        with tenant_context(tenant_a):
            for n in range(LEADS):  # one chat capture per transaction; each commit kicks a delivery
                with transaction.atomic(using=alias):
                    outbox_enqueue(
                        connection=connection, stream="leads", payload=lead(n), ordering_key=f"conv-{n}"
                    )
        deadline = time.monotonic() + 30
        while not attempts.exclude(error="").exists():
            assert time.monotonic() < deadline, f"the worker never tried a delivery; see {worker.log}"
            time.sleep(0.2)
        time.sleep(1)
        assert vendor_rows(sf, "leads") == []
        assert not messages.filter(status__in=[OutboxStatus.DEAD, OutboxStatus.DELIVERED]).exists()

        sf.clear_faults()
        sf.inject(latency_ms=150)  # slow enough that the kill lands mid-delivery
        deadline = time.monotonic() + DEADLINE_S
        while (delivered := messages.filter(status=OutboxStatus.DELIVERED).count()) < LEADS:
            assert time.monotonic() < deadline, f"{delivered}/{LEADS} delivered in {DEADLINE_S} s"
            assert not messages.filter(status=OutboxStatus.DEAD).exists()
            if killed_at is None and delivered >= 100 and attempts.filter(finished_at=None).exists():
                worker.kill()  # parent and children at once, in the middle of a batch
                killed_at = delivered
                worker.start()
            outbox_relay_due.delay()  # the beat's job
            time.sleep(0.5)
    finally:
        worker.stop()
        connections.close_all()

    assert killed_at is not None and killed_at < LEADS
    leads = vendor_rows(sf, "leads")
    ids = [ext for ext, _ in leads]
    assert len(ids) == LEADS and len(set(ids)) == LEADS  # no duplicates at the vendor
    assert set(ids) == set(messages.values_list("external_id", flat=True))
    assert {data["Email"] for _, data in leads} == {f"lead{n}@example.test" for n in range(LEADS)}
    state = requests.get(f"{sf.base_url}/__admin/state", verify=sf.ca_bundle, timeout=10).json()
    assert state["counts"]["leads"] == LEADS  # the simulator's own count: nothing else was created
    assert messages.filter(status=OutboxStatus.DELIVERED).count() == LEADS
    assert attempts.exclude(error="").exists()  # the outage was seen ...
    assert attempts.filter(finished_at=None).exists()  # ... and the kill cut a delivery short
