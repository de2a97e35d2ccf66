"""Shared by the delivery tests: store a later message the way the hand-off slice does and deliver it, read
Server-Sent Events from a streaming response."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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


def sse(chunks: Iterator[Any]) -> Iterator[tuple[str, Any, str]]:
    """(event, data, id) of each Server-Sent Event as it arrives (comments skipped)."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(
                line.split(": ", 1)
                for line in block.splitlines()
                if not line.startswith(":") and ": " in line
            )
            if "event" in fields:
                yield fields["event"], json.loads(fields["data"]), fields.get("id", "")
