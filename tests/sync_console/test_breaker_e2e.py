"""Breaker end to end: a vendor outage stops one tenant's syncs from reaching it; another tenant carries on.

Real sync runs (`sync_stream`, as the Celery task calls it) against two in-process Salesforce simulators:
tenant A's in a full outage, tenant B's healthy. Requests are counted where they arrive, in the simulator.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.core.context import tenant_context
from apps.integrations.models import Connection, RunStatus, SyncRun
from apps.integrations.resilience import breaker_for
from apps.integrations.services.sync import SyncFailed, sync_stream
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from connectors.salesforce.simulator import SalesforceSimulator
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified
from tests.fixtures.integrations import sf_connection
from tests.fixtures.simulators import StartSimulator

pytestmark = pytest.mark.django_db

COUNTS = {"contacts": 50, "accounts": 5, "tickets": 5, "orders": 5, "articles": 2, "leads": 0}
THRESHOLD = 3


class Counted:
    """Wraps a simulator's dispatch to count the vendor requests that reach it (admin calls excluded)."""

    def __init__(self, sim: SalesforceSimulator) -> None:
        self.requests = 0
        original = sim.dispatch

        def dispatch(request: Any) -> Any:
            if not request.path.startswith("/__admin/"):
                self.requests += 1
            return original(request)

        sim.dispatch = dispatch  # type: ignore[method-assign]


@pytest.fixture
def sims(simulator: StartSimulator, settings: Any) -> tuple[SalesforceSimulator, SalesforceSimulator]:
    """Two orgs: one to take down, one that stays healthy."""
    settings.HUB_BREAKER_FAILURE_THRESHOLD = THRESHOLD
    settings.HUB_BREAKER_COOLDOWN_SECONDS = 1
    return simulator(SalesforceSimulator, counts=COUNTS), simulator(
        SalesforceSimulator, counts=COUNTS, seed=11
    )


def run(tenant: Tenant, connection: Connection) -> tuple[str, str]:
    """One sync attempt as the task makes it: (run status, attempt error or "")."""
    with tenant_context(tenant):
        try:
            result = sync_stream(connection_id=connection.pk, stream="contacts", trigger="schedule")
        except SyncFailed as exc:
            return "retry", exc.message
    assert result is not None
    return str(result.status), result.error


def sleep_until(moment: datetime | None) -> None:
    assert moment is not None
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.1)


def test_outage_opens_the_breaker_for_one_tenant_only_and_the_console_shows_it(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, sims: tuple[SalesforceSimulator, SalesforceSimulator]
) -> None:
    down, healthy = sims
    acme, globex = sf_connection(tenant_a, down), sf_connection(tenant_b, healthy)
    down_wire, healthy_wire = Counted(down), Counted(healthy)
    down.inject(outage="503")

    # Tenant A: the first THRESHOLD runs reach the vendor and fail; then the breaker opens.
    outcomes = []
    for _ in range(THRESHOLD):
        outcomes.append(run(tenant_a, acme))
        assert run(tenant_b, globex)[0] == "succeeded", "tenant B syncs at the same time, unaffected"
    assert [status for status, _error in outcomes] == ["retry"] * THRESHOLD
    reached = down_wire.requests
    assert reached >= THRESHOLD
    breaker = breaker_for(acme).state()
    assert breaker.state == "open" and breaker.retry_at is not None

    # While open, runs are skipped fast without a single request to the vendor.
    started = time.monotonic()
    for _ in range(5):
        status, error = run(tenant_a, acme)
        assert status == "retry" and "circuit breaker is open" in error
    assert time.monotonic() - started < 1.0
    assert down_wire.requests == reached, "no call reaches the vendor while the breaker is open"

    # Tenant B's healthy vendor keeps syncing and its breaker stays closed.
    healthy_before = healthy_wire.requests
    healthy.touch("contacts", count=3)
    assert run(tenant_b, globex)[0] == "succeeded"
    assert healthy_wire.requests > healthy_before
    assert breaker_for(globex).state().state == "closed"
    with tenant_context(tenant_b):
        assert SyncRun.objects.filter(status=RunStatus.SUCCEEDED).count() == THRESHOLD + 1

    # The console shows A's breaker open, with when it will probe.
    operator = UserFactory.create(username="connor")
    membership_add(tenant=tenant_a, user=operator, role=Role.CONNECTOR_MANAGER)
    login_verified(client, operator)
    page = client.get(reverse("integrations:sync-overview", kwargs={"tenant_slug": tenant_a.slug}))
    probe_at = timezone.localtime(breaker.retry_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f"will probe at {probe_at}" in page.content.decode()

    # After the cool-down exactly one run probes; the vendor is still down, so the breaker re-opens.
    sleep_until(breaker.retry_at)
    assert run(tenant_a, acme)[0] == "retry"
    assert down_wire.requests == reached + 1, (
        "the probe is one request (a POST is never retried by transport)"
    )
    assert run(tenant_a, acme)[1].startswith("The vendor is failing")
    assert down_wire.requests == reached + 1
    reopened = breaker_for(acme).state()
    assert reopened.state == "open"

    # The vendor recovers: the next probe after the (doubled) cool-down succeeds and the sync completes.
    down.clear_faults()
    sleep_until(reopened.retry_at)
    status, error = run(tenant_a, acme)
    assert status == "succeeded", error
    assert breaker_for(acme).state().state == "closed"
    with tenant_context(tenant_a):
        assert SyncRun.objects.filter(status=RunStatus.SUCCEEDED).get().read == COUNTS["contacts"]
