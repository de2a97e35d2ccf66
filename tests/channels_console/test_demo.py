"""The demo: a channel of each kind per tenant, wired to the platform simulators, idempotent on re-run."""

from __future__ import annotations

import pytest

from apps.chat.demo import DEMO_CHANNEL, DEMO_ORIGINS, PLATFORM_DEMO, seed_demo_platform_channels
from apps.chat.models import Channel
from apps.chat.services.channel_setup import channel_platform_test
from apps.chat.services.channels import channel_create
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from connectors.simulation import Simulator
from connectors.slack.simulator import SlackSimulator
from connectors.teams.simulator import TeamsSimulator
from connectors.twilio.simulator import TwilioSimulator
from connectors.whatsapp.simulator import WhatsAppSimulator
from tests.fixtures.simulators import StartSimulator

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform_sims(simulator: StartSimulator) -> dict[str, Simulator]:
    """The four platform simulators, started for the test (one CA, which the hub trusts)."""
    classes: dict[str, type[Simulator]] = {
        "whatsapp": WhatsAppSimulator,
        "slack": SlackSimulator,
        "teams": TeamsSimulator,
        "twilio": TwilioSimulator,
    }
    return {name: simulator(cls) for name, cls in classes.items()}


def test_demo_seeds_five_channels_idempotently(tenant_a: Tenant, platform_sims: dict[str, Simulator]) -> None:
    channel_create(tenant=tenant_a, name=DEMO_CHANNEL, kind="web")  # seed_demo_channels makes it first
    described = {name: sim.describe() for name, sim in platform_sims.items()}
    first = seed_demo_platform_channels([tenant_a], simulators=described)
    kinds = sorted(row["kind"] for row in first[tenant_a.slug])
    assert kinds == ["slack", "sms", "teams", "web", "whatsapp"]
    channels = {c.name: c for c in Channel.objects.filter(tenant=tenant_a)}
    assert len(channels) == 5
    web = channels[DEMO_CHANNEL]
    assert web.widget_key and web.allowed_origins == DEMO_ORIGINS
    links = {name: c.platform_connection_id for name, c in channels.items() if name != DEMO_CHANNEL}
    assert all(links.values())
    whatsapp = platform_sims["whatsapp"]
    assert (
        whatsapp.describe()["webhook_url"]
        == f"http://localhost:8000/hooks/channels/{channels['WhatsApp'].pk}/"
    )
    assert channel_platform_test(channel=channels["WhatsApp"]).ok
    again = seed_demo_platform_channels([tenant_a], simulators=described)
    assert sorted(row["kind"] for row in again[tenant_a.slug]) == kinds
    assert Channel.objects.filter(tenant=tenant_a).count() == 5
    assert {
        c.name: c.platform_connection_id
        for c in Channel.objects.filter(tenant=tenant_a, kind__in=["whatsapp", "slack", "teams", "sms"])
    } == links
    assert Channel.objects.get(pk=web.pk).widget_key == web.widget_key
    with tenant_context(tenant_a):
        assert Connection.objects.count() == 4


def test_demo_skips_platforms_whose_simulator_is_down(tenant_a: Tenant) -> None:
    result = seed_demo_platform_channels([tenant_a], simulators={})
    assert result[tenant_a.slug] == []
    assert not Channel.objects.filter(tenant=tenant_a).exists()


def test_demo_registers_each_channel_webhook_with_its_simulator(
    tenant_a: Tenant, platform_sims: dict[str, Simulator], caplog: pytest.LogCaptureFixture
) -> None:
    """`make run` logged "could not register the simulator webhook" for Slack and Teams: their simulators
    had no /__admin/webhook. Every platform simulator now takes it, over HTTPS as the demo calls it."""
    described = {name: sim.describe() for name, sim in platform_sims.items()}
    seed_demo_platform_channels([tenant_a], simulators=described)
    channels = {c.name: c for c in Channel.objects.filter(tenant=tenant_a)}
    for name, (_kind, simulator) in PLATFORM_DEMO.items():
        expected = f"http://localhost:8000/hooks/channels/{channels[name].pk}/"
        assert platform_sims[simulator].describe()["webhook_url"] == expected, name
    assert "could not register" not in caplog.text
