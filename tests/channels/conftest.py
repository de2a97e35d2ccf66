"""The four platform simulators, started once per test session by the plugin (one local CA for all)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.slack.simulator import SlackSimulator
from connectors.teams.simulator import TeamsSimulator
from connectors.twilio.simulator import TwilioSimulator
from connectors.whatsapp.simulator import WhatsAppSimulator
from tests.channels.platforms import Wired, wire
from tests.fixtures.simulators import StartSimulator

SIMULATORS = {
    "whatsapp": WhatsAppSimulator,
    "slack": SlackSimulator,
    "teams": TeamsSimulator,
    "sms": TwilioSimulator,
}


@pytest.fixture(scope="session")
def channel_sims(session_simulator: StartSimulator) -> dict[str, Any]:
    sims: dict[str, Any] = {kind: session_simulator(cls) for kind, cls in SIMULATORS.items()}
    sims["whatsapp"].enforce_window = False
    for sim in sims.values():
        sim.auto_status = False  # status reports are sent on purpose where a test wants them
    return sims


@pytest.fixture
def sims(channel_sims: dict[str, Any], settings: Any) -> Iterator[dict[str, Any]]:
    settings.HUB_CONNECTOR_CA_BUNDLE = channel_sims["whatsapp"].ca_bundle
    yield channel_sims
    for sim in channel_sims.values():
        sim.clear_faults()
        if hasattr(sim, "reset"):
            sim.reset()
        elif hasattr(sim, "messages"):
            sim.messages.clear()
        if hasattr(sim, "activities"):
            sim.activities.clear()


@pytest.fixture(params=["whatsapp", "slack", "teams", "sms"])
def wired(request: pytest.FixtureRequest, tenant_a: Any, sims: dict[str, Any]) -> Wired:
    return wire(tenant_a, request.param, sims[request.param])
