"""A handoff to Dynamics 365, end to end in process against the simulator: the case is filed through the
outbox into the route's queue (AddToQueue), an agent's `*WEB*` note reaches the conversation on the next
refresh (Dataverse sends the hub no webhook: the poll is the trigger) while an internal note never does, the
customer's reply becomes one note on the case and is never echoed, the resolved case gives the conversation
back to the bot, and a second tenant whose simulator hands out the same case ids sees none of it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.chat.models import ConversationStatus, HandoffState, Role
from apps.chat.services import routing
from apps.chat.services.handoff_thread import handoff_refresh
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.services.outbox import outbox_relay
from apps.tenants.models import Tenant
from connectors.dynamics.simulator import DynamicsSimulator
from tests.chat.helpers import say
from tests.fixtures.chat import IssuedKey
from tests.fixtures.integrations import demo_connection
from tests.fixtures.simulators import TINY, StartSimulator
from tests.handoff.support import agent_texts, hand_off, messages, the_handoff

pytestmark = pytest.mark.django_db(databases="__all__")


def relay(tenant: Tenant, connection: Connection) -> int:
    with tenant_context(tenant):
        return outbox_relay(connection_id=connection.pk)


def refresh(tenant: Tenant, conversation_id: str) -> Any:
    with tenant_context(tenant):
        return handoff_refresh(handoff_id=the_handoff(tenant, conversation_id).pk)


def conversation_status(tenant: Tenant, conversation_id: str) -> str:
    from apps.chat.models import Conversation

    with tenant_context(tenant):
        return str(Conversation.objects.get(pk=conversation_id).status)


def test_a_handoff_to_dynamics_round_trip(
    api_client: Client,
    api_key_a: IssuedKey,
    api_key_b: IssuedKey,
    tenant_a: Tenant,
    tenant_b: Tenant,
    simulator: StartSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sims: dict[Any, DynamicsSimulator] = {}
    connections: dict[Any, Connection] = {}
    for tenant in (tenant_a, tenant_b):
        sims[tenant.pk] = simulator(DynamicsSimulator, counts=TINY)  # same seed: the same ids in both
        connections[tenant.pk] = demo_connection(
            tenant, "dynamics365", sims[tenant.pk].describe(), name="D365"
        )
    by_connection = {c.pk: c for c in connections.values()}
    real_route = routing.handoff_route

    def route(**kwargs: Any) -> routing.RouteDecision:
        decided = real_route(**kwargs)
        assert decided.connection is not None and decided.connection.pk in by_connection
        return routing.RouteDecision(connection=decided.connection, queue="Billing")

    monkeypatch.setattr(routing, "handoff_route", route)
    sim, conn = sims[tenant_a.pk], connections[tenant_a.pk]

    # Handoff → a case in the route's queue, learned by the refresh.
    conversation, turn = hand_off(api_client, api_key_a)
    other, other_turn = hand_off(api_client, api_key_b)
    assert turn["reply"]["handoff"] is True and other_turn["reply"]["handoff"] is True
    assert relay(tenant_a, conn) == 1 and relay(tenant_b, connections[tenant_b.pk]) == 1
    refresh(tenant_a, conversation)
    refresh(tenant_b, other)
    handoff = the_handoff(tenant_a, conversation)
    assert handoff.state == HandoffState.OPEN and handoff.queue == "Billing"
    case_id = handoff.ticket_vendor_id
    assert case_id and case_id == the_handoff(tenant_b, other).ticket_vendor_id
    case = sim.incident(case_id)
    assert case.data["hub_externalid"] == handoff.ticket_external_id
    assert sim.queue_of(case_id) == "Billing"
    assert handoff.ticket_number == case.data["ticketnumber"]

    # Agent → customer: the *WEB* note arrives once, the internal note never.
    sim.agent(ticket=case_id, body="Interne Notiz: Kunde prüfen", public=False)
    sim.agent(ticket=case_id, body="Guten Tag, hier ist Beth.", author="Beth Anglin")
    refresh(tenant_a, conversation)
    refresh(tenant_a, conversation)  # a second refresh stores nothing twice
    assert agent_texts(tenant_a, conversation) == ["Guten Tag, hier ist Beth."]
    [agent] = messages(tenant_a, conversation, Role.AGENT)
    assert agent.author == "Beth Anglin"

    # Customer → agent: the bot is quiet, the case gets one note; reading it back echoes nothing.
    reply = say(api_client, api_key_a, conversation, "Danke, mein Paket fehlt seit Montag.").json()["reply"]
    assert reply["text"] is None and reply["handoff"] is True
    assert relay(tenant_a, conn) == 1
    assert relay(tenant_a, conn) == 0
    notes = [n.data["notetext"] for n in sim.notes(case_id) if "Paket fehlt" in n.data["notetext"]]
    assert len(notes) == 1 and not notes[0].startswith("*WEB*")
    refresh(tenant_a, conversation)
    assert agent_texts(tenant_a, conversation) == ["Guten Tag, hier ist Beth."]

    # A later reply, then the case is resolved: the bot takes the conversation back.
    sim.agent(ticket=case_id, body="Ersatz ist unterwegs.")
    sim.agent(ticket=case_id, state="resolved")
    refresh(tenant_a, conversation)
    assert agent_texts(tenant_a, conversation) == ["Guten Tag, hier ist Beth.", "Ersatz ist unterwegs."]
    done = the_handoff(tenant_a, conversation)
    assert done.state == HandoffState.RESOLVED and done.resolution == "resolved"
    assert conversation_status(tenant_a, conversation) == ConversationStatus.OPEN

    # The other tenant: the same case id at its own simulator; nothing crossed.
    assert agent_texts(tenant_b, other) == []
    assert the_handoff(tenant_b, other).state == HandoffState.OPEN
    assert conversation_status(tenant_b, other) == ConversationStatus.HANDOFF
    assert sims[tenant_b.pk].notes(case_id) == []
