"""Shared by the delivery tests: store a later message the way the hand-off slice does and deliver it
(Server-Sent Events are read with tests.fixtures.chat.sse_events)."""

from __future__ import annotations

from django.db import transaction

from apps.chat.models import Conversation, Message, Role
from apps.chat.services.delivery import Delivery, message_deliver
from apps.core.context import current_tenant


def agent_says(
    conversation: Conversation,
    text: str,
    *,
    author: str = "Anna",
    key: str | None = None,
    role: str = Role.AGENT,
) -> tuple[Message, Delivery]:
    """An agent's comment (or the bot's later notice, `role`) stored and delivered in one transaction, as the
    hand-off slice does it (call in the tenant's context)."""
    with transaction.atomic(using=current_tenant().db_alias):
        message = Message.objects.create(
            tenant_id=conversation.tenant_id,
            conversation=conversation,
            role=role,
            text=text,
            author=author,
            idempotency_key=key if key is not None else (f"agent:{text[:40]}" if role == Role.AGENT else ""),
        )
        delivery = message_deliver(conversation=conversation, message=message)
    return message, delivery
