"""Breaker against the Salesforce simulator: an outage stops reaching the vendor; other tenants carry on."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from apps.integrations.models import Connection
from apps.integrations.resilience import BreakerOpen, CircuitBreaker, RedisBreakerStore, breaker_for, guarded
from connectors.errors import VendorUnavailable
from connectors.http import HttpSession
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.simulators import StartSimulator

COUNTS = {"contacts": 20, "accounts": 10, "tickets": 10, "orders": 10, "articles": 5, "leads": 0}


class CountingSession(HttpSession):
    """Counts every request that leaves the hub (the simulator's admin API has no request counter)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent += 1
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def sims(simulator: StartSimulator) -> tuple[SalesforceSimulator, SalesforceSimulator]:
    """Two orgs: one to take down, one that stays healthy."""
    return simulator(SalesforceSimulator, counts=COUNTS), simulator(
        SalesforceSimulator, counts=COUNTS, seed=7
    )


def connector_for(sim: SalesforceSimulator) -> tuple[SalesforceConnector, CountingSession]:
    described = sim.describe()
    # No transport retries: one connector call is one request, so the count is exact.
    session = CountingSession(
        allow_hosts=["127.0.0.1"], ca_bundle=sim.ca_bundle, max_retries=0, timeout=(2, 10)
    )
    config = {k: described[k] for k in ("login_url", "client_id", "client_secret")}
    return SalesforceConnector(config, session=session), session


def attempt(breaker: CircuitBreaker, connector: SalesforceConnector) -> str:
    """One guarded vendor call, as the sync engine makes it."""
    try:
        with guarded(breaker):
            connector.check_connection()
    except VendorUnavailable:
        return "failed"
    except BreakerOpen:
        return "skipped"
    return "ok"


def sleep_until(moment: datetime | None) -> None:
    assert moment is not None
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.05)


def test_outage_stops_calls_after_the_threshold_until_the_cooldown(
    sims: tuple[SalesforceSimulator, SalesforceSimulator], store: RedisBreakerStore
) -> None:
    down_sim, healthy_sim = sims
    down_sim.inject(outage="503")
    try:
        acme = Connection(tenant_id=1, kind="salesforce", name="acme sf")
        globex = Connection(tenant_id=2, kind="salesforce", name="globex sf")
        acme_breaker = breaker_for(acme, store=store, failure_threshold=3, cooldown=0.5)
        globex_breaker = breaker_for(globex, store=store, failure_threshold=3, cooldown=0.5)
        acme_sf, acme_wire = connector_for(down_sim)
        globex_sf, globex_wire = connector_for(healthy_sim)

        outcomes = [attempt(acme_breaker, acme_sf) for _ in range(10)]
        assert outcomes == ["failed"] * 3 + ["skipped"] * 7
        assert acme_wire.sent == 3, "after the threshold no call reaches the vendor"
        state = acme_breaker.state()
        assert state.state == "open"

        # the second tenant's connection to a healthy vendor is unaffected
        assert [attempt(globex_breaker, globex_sf) for _ in range(3)] == ["ok"] * 3
        assert globex_wire.sent > 3
        assert globex_breaker.state().state == "closed"

        # after the cool-down exactly one probe goes out; the vendor is still down, so it re-opens for longer
        sleep_until(state.retry_at)
        assert [attempt(acme_breaker, acme_sf) for _ in range(5)] == ["failed"] + ["skipped"] * 4
        assert acme_wire.sent == 4
        reopened = acme_breaker.state()
        assert reopened.retry_at is not None and reopened.opened_at is not None
        assert (reopened.retry_at - reopened.opened_at).total_seconds() == pytest.approx(1.0, abs=0.01)

        # the vendor recovers; the next probe closes the breaker and work flows again
        down_sim.clear_faults()
        assert attempt(acme_breaker, acme_sf) == "skipped", "still cooling down"
        sleep_until(reopened.retry_at)
        assert attempt(acme_breaker, acme_sf) == "ok"
        assert acme_breaker.state().state == "closed"
        assert acme_wire.sent > 4
    finally:
        down_sim.clear_faults()
