"""Session-scoped simulators: each vendor simulator starts once for the whole tests/connectors run."""

from __future__ import annotations

import pytest

from connectors.hubspot.simulator import HubSpotSimulator
from connectors.salesforce.simulator import SalesforceSimulator
from connectors.sap.simulator import SapSimulator
from connectors.sap_odata.simulator import SapODataSimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from tests.fixtures.simulators import StartSimulator

COUNTS = {"contacts": 1000, "accounts": 600, "tickets": 600, "orders": 600, "articles": 300, "leads": 0}


@pytest.fixture(scope="session")
def salesforce_sim(session_simulator: StartSimulator) -> SalesforceSimulator:
    """Full-size contacts (10,000) so paging and throughput are realistic; other objects smaller."""
    return session_simulator(SalesforceSimulator, counts={**COUNTS, "contacts": 10_000})


@pytest.fixture(scope="session")
def servicenow_sim(session_simulator: StartSimulator) -> ServiceNowSimulator:
    return session_simulator(ServiceNowSimulator, counts=COUNTS)


@pytest.fixture(scope="session")
def hubspot_sim(session_simulator: StartSimulator) -> HubSpotSimulator:
    return session_simulator(HubSpotSimulator, counts=COUNTS)


@pytest.fixture(scope="session")
def sap_sim(session_simulator: StartSimulator) -> SapSimulator:
    return session_simulator(SapSimulator, counts=COUNTS)


@pytest.fixture(scope="session")
def sap_odata_sim(session_simulator: StartSimulator) -> SapODataSimulator:
    return session_simulator(SapODataSimulator, counts=COUNTS)
