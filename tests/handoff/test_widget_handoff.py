"""The web widget during a handoff: the visitor's message goes to the ticket, the turn has no text (JSON and
streamed), and the agent's answer arrives as a later message (`?after=`)."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.chat.models import Channel, Handoff, Role
from apps.chat.services.handoff_thread import handoff_refresh
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from tests.chat.widget_support import headers, say, start, widget_enable
from tests.handoff.support import FakeTicket, messages, ticket_delivered

pytestmark = pytest.mark.django_db


def test_a_handed_off_widget_conversation_is_quiet_and_gets_the_agents_answer(
    channel_a: Channel, tenant_a: Tenant, sn_a: tuple[Connection, str], tickets: dict
) -> None:
    client = Client()
    key = widget_enable(channel_a)
    started = start(client, channel_a, key, locale="de")
    conversation_id = started["conversation_id"]
    assert say(client, channel_a, key, started, "Ich möchte mit einem Menschen sprechen").status_code == 200
    with tenant_context(tenant_a):
        handoff = Handoff.objects.get(conversation_id=conversation_id)
    tickets[sn_a[0].pk, "sys7"] = ticket = FakeTicket("sys7")
    ticket_delivered(tenant_a, handoff, "sys7")

    quiet = say(client, channel_a, key, started, "Hallo?")
    assert quiet.status_code == 200
    assert quiet.json()["reply"]["text"] is None and quiet.json()["reply"]["handoff"] is True
    streamed = say(client, channel_a, key, started, "Noch da?", HTTP_ACCEPT="text/event-stream")
    assert streamed.status_code == 200
    body = b"".join(streamed.streaming_content).decode()
    assert "event: delta" not in body and "event: done" in body

    ticket.comment("Guten Tag, hier ist Beth.")
    with tenant_context(tenant_a):
        handoff_refresh(handoff_id=handoff.pk)
    [agent] = messages(tenant_a, conversation_id, Role.AGENT)
    later = client.get(
        f"/widget/v1/{channel_a.pk}/conversations/{conversation_id}/messages?after={agent.pk - 1}",
        **headers(key, token=started["token"]),
    )
    assert later.status_code == 200
    pages = [(m["role"], m["text"]) for m in later.json()["messages"]]
    assert pages == [("agent", "Guten Tag, hier ist Beth.")]
