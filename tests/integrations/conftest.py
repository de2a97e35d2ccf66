"""The four vendor simulators, started in this process once per session, for the integrations tests."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.simulators import simulator_class
from tests.fixtures.simulators import StartSimulator
from tests.integrations.helpers import KINDS

COUNTS = {"contacts": 50, "accounts": 30, "tickets": 30, "orders": 30, "articles": 20, "leads": 0}


@pytest.fixture(scope="session")
def sims(session_simulator: StartSimulator) -> dict[str, dict[str, Any]]:
    """Descriptions (base URL, demo credentials, CA bundle) of the running simulators, by vendor."""
    return {kind: session_simulator(simulator_class(kind), counts=COUNTS).describe() for kind in KINDS}


@pytest.fixture(autouse=True)
def _trust_simulators(settings: Any, sims: dict[str, dict[str, Any]]) -> None:
    """Verify the simulators' TLS with their own CA (loopback is allow-listed outside production)."""
    settings.HUB_CONNECTOR_CA_BUNDLE = sims["salesforce"]["ca_bundle"]
