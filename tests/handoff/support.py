"""What the handoff tests share: a conversation handed off through the API, its ticket "delivered", and a
scripted ticket thread standing in for the vendor (the in-process tests; the end-to-end ones use the
simulators)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.test import Client

from apps.chat.models import Handoff, Message, Role
from apps.core.context import tenant_context
from apps.integrations.models import OutboxMessage, OutboxStatus
from apps.tenants.models import Tenant
from connectors.base import Cursor
from connectors.errors import ConnectorError
from connectors.tickets import Comment, TicketState, TicketThread
from tests.chat.helpers import JSON, start
from tests.fixtures.chat import IssuedKey

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def hand_off(client: Client, key: IssuedKey, *, locale: str = "de") -> tuple[str, dict[str, Any]]:
    """Start a conversation and ask for a person (the explicit button); its id and the handoff turn."""
    conversation = start(client, key, locale=locale)
    response = client.post(
        f"/api/v1/conversations/{conversation['id']}/handoff", {}, content_type=JSON, **key.headers
    )
    assert response.status_code == 200, response.content
    return conversation["id"], response.json()


def the_handoff(tenant: Tenant, conversation_id: str) -> Handoff:
    with tenant_context(tenant):
        return Handoff.objects.get(conversation_id=conversation_id)


def ticket_delivered(tenant: Tenant, handoff: Handoff, vendor_id: str) -> None:
    """What the relay records when the vendor accepted the ticket."""
    with tenant_context(tenant):
        OutboxMessage.objects.filter(pk=handoff.ticket_outbox_id or 0).update(
            status=OutboxStatus.DELIVERED, vendor_id=vendor_id
        )


def messages(tenant: Tenant, conversation_id: str, role: str | None = None) -> list[Message]:
    with tenant_context(tenant):
        found = Message.objects.filter(conversation_id=conversation_id).order_by("id")
        return list(found.filter(role=role) if role else found)


def agent_texts(tenant: Tenant, conversation_id: str) -> list[str]:
    return [m.text for m in messages(tenant, conversation_id, Role.AGENT)]


@dataclass
class FakeTicket:
    """A vendor ticket's thread as `TicketThreads.ticket_thread` reads it, scripted by the test."""

    ticket_id: str
    state: TicketState = TicketState.OPEN
    comments: list[Comment] = field(default_factory=list)
    error: ConnectorError | None = None
    reads: int = 0

    def comment(
        self, body: str, *, public: bool = True, from_hub: bool = False, author: str = "Beth", second: int = 0
    ) -> Comment:
        stamp = T0 + timedelta(seconds=second or len(self.comments))
        made = Comment(
            id=f"c{len(self.comments) + 1}",
            created_at=stamp,
            body=body,
            public=public,
            author=author,
            from_hub=from_hub,
        )
        self.comments.append(made)
        return made

    def read(self, cursor: Cursor | None) -> TicketThread:
        self.reads += 1
        if self.error is not None:
            raise self.error
        cursor = cursor or Cursor()
        new = [
            c
            for c in sorted(self.comments, key=lambda c: (c.created_at, c.id))
            if cursor.value is None
            or c.created_at > cursor.value
            or (c.created_at == cursor.value and c.id not in cursor.seen_ids)
        ]
        for c in new:
            if cursor.value is None or c.created_at > cursor.value:
                cursor = Cursor(c.created_at, frozenset({c.id}))
            else:
                cursor = Cursor(cursor.value, cursor.seen_ids | {c.id})
        return TicketThread(
            ticket_id=self.ticket_id,
            state=self.state,
            comments=new,
            cursor=cursor,
            details={"number": "INC0010001"},
        )
