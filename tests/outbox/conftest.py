"""Outbox fixtures: a fresh in-process Salesforce simulator per test, a connection to it, lead payloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.sync.conftest import SMALL, sf_connection

TINY = {**SMALL, "contacts": 5}


@pytest.fixture(scope="session")
def outbox_sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outbox-simulators")


@pytest.fixture
def sf(outbox_sim_state: Path, settings: Any) -> Iterator[SalesforceSimulator]:
    sim = SalesforceSimulator(state_dir=outbox_sim_state, counts=TINY).start()
    settings.HUB_CONNECTOR_CA_BUNDLE = sim.ca_bundle
    yield sim
    sim.stop()


@pytest.fixture
def connection(tenant_a: Tenant, sf: SalesforceSimulator) -> Connection:
    return sf_connection(tenant_a, sf)


def lead(n: int, *, company: str = "Acme", email: str | None = None) -> dict[str, Any]:
    """Canonical lead fields, as a chat lead capture would record them."""
    return {
        "first_name": "Lead",
        "last_name": f"Number {n}",
        "email": email or f"lead{n}@example.test",
        "company": company,
        "source": "Chat",
    }


def vendor_leads(sim: SalesforceSimulator) -> list[tuple[str, dict[str, Any]]]:
    """The simulator's leads created by the hub, as (hub external id, vendor fields); duplicates kept."""
    table = sim.tables["leads"]
    with table.lock:
        rows = [
            (str(row.data.get("Ext_Id__c")), dict(row.data)) for row in table.rows.values() if not row.deleted
        ]
    return [(ext, data) for ext, data in rows if ext.startswith("hub-")]
