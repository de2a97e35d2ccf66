"""Reads of a channel's reply delivery: the outbox messages of its platform account (region database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from apps.chat.models import Channel
from apps.core.context import tenant_context
from apps.integrations.models import DeadLetter, DeadLetterStatus, OutboxMessage

MESSAGES_STREAM = "messages"


@dataclass(frozen=True, slots=True)
class Delivery:
    """Recent replies (newest first), counts per outbox status and the open dead letters."""

    recent: list[OutboxMessage] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    open_dead_letters: int = 0


def channel_delivery(*, channel: Channel, limit: int = 20) -> Delivery:
    """The delivery status of the channel's replies (empty without a platform account)."""
    if channel.platform_connection_id is None:
        return Delivery()
    connection_id: Any = channel.platform_connection_id
    with tenant_context(channel.tenant):
        messages = OutboxMessage.objects.filter(connection_id=connection_id, stream=MESSAGES_STREAM)
        recent = list(
            messages.only(
                "id", "status", "attempts", "last_error", "created_at", "delivered_at", "next_attempt_at"
            ).order_by("-id")[:limit]
        )
        counts = {
            row["status"]: row["n"] for row in messages.order_by().values("status").annotate(n=Count("id"))
        }
        dead = DeadLetter.objects.filter(connection_id=connection_id, status=DeadLetterStatus.OPEN).count()
    return Delivery(recent=recent, counts=counts, open_dead_letters=dead)


def platform_connections(*, tenant: Any, channels: Any) -> dict[Any, Any]:
    """The platform Connections of `channels` (one query), by id: lists show them without a query each."""
    from apps.integrations.models import Connection

    ids = [c.platform_connection_id for c in channels if c.platform_connection_id is not None]
    if not ids:
        return {}
    with tenant_context(tenant):
        return {c.pk: c for c in Connection.objects.filter(pk__in=ids)}
