"""Channel console/API tests: a WhatsApp Cloud API simulator per test (the plugin's `simulator` factory)."""

from __future__ import annotations

import pytest

from connectors.whatsapp.simulator import WhatsAppSimulator
from tests.fixtures.simulators import StartSimulator


@pytest.fixture
def wa_sim(simulator: StartSimulator) -> WhatsAppSimulator:
    """A WhatsApp Cloud API simulator the hub trusts (its CA), on loopback."""
    return simulator(WhatsAppSimulator)
