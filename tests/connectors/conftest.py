"""Session-scoped simulators: each vendor simulator starts once for the whole tests/connectors run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.hubspot.simulator import HubSpotSimulator
from connectors.salesforce.simulator import SalesforceSimulator
from connectors.sap.simulator import SapSimulator
from connectors.servicenow.simulator import ServiceNowSimulator

SMALL = {"contacts": 1000, "accounts": 600, "tickets": 600, "orders": 600, "articles": 300, "leads": 0}


@pytest.fixture(scope="session")
def sim_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulators")


@pytest.fixture(scope="session")
def salesforce_sim(sim_state_dir: Path) -> Iterator[SalesforceSimulator]:
    """Full-size contacts (10,000) so paging and throughput are realistic; other objects smaller."""
    sim = SalesforceSimulator(state_dir=sim_state_dir, counts={**SMALL, "contacts": 10_000}).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def servicenow_sim(sim_state_dir: Path) -> Iterator[ServiceNowSimulator]:
    sim = ServiceNowSimulator(state_dir=sim_state_dir, counts=SMALL).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def hubspot_sim(sim_state_dir: Path) -> Iterator[HubSpotSimulator]:
    sim = HubSpotSimulator(state_dir=sim_state_dir, counts=SMALL).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def sap_sim(sim_state_dir: Path) -> Iterator[SapSimulator]:
    sim = SapSimulator(state_dir=sim_state_dir, counts=SMALL).start()
    yield sim
    sim.stop()
