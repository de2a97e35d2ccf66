"""Reads of a channel's reply delivery: the outbox messages of its platform account (region database), and
what could not be delivered, with why and when (issue 18: "the console says when a reply could not be
delivered and why")."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.utils.translation import gettext as _

from apps.chat.models import Channel, Message
from apps.core.context import tenant_context
from apps.integrations.models import DeadLetter, DeadLetterStatus, OutboxMessage

MESSAGES_STREAM = "messages"


@dataclass(frozen=True, slots=True)
class Delivery:
    """Recent replies (newest first), counts per outbox status and the open dead letters."""

    recent: list[OutboxMessage] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    open_dead_letters: int = 0
    undelivered: list[Undelivered] = field(default_factory=list)
    held: int = 0  # messages never sent (the console offers to send them again)


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A message that did not reach the customer: when, why (readable), and its conversation."""

    at: datetime | None
    reason: str
    conversation_id: str
    source: str  # "held" (never sent), "dead" (the outbox gave up), "refused" (the platform reported failure)


def _conversation(key: Any) -> str:
    """The conversation id of an ordering key ("" when it is not one: the page links only real ids)."""
    try:
        return str(uuid.UUID(str(key)))
    except ValueError:
        return ""


def _reason(code: str) -> str:
    """A readable reason for a delivery code; the platform's own message for anything else."""
    reasons = {
        "window_closed": _(
            "WhatsApp's 24-hour window had closed (the customer last wrote more than 24 hours before) and "
            "the account has no template for late replies."
        ),
        "no_account": _("The channel has no platform account."),
        "no_address": _("The conversation has no address on the platform to reply to."),
        "bad_account": _(
            "The platform account's settings or credentials cannot be used: fix them and use “Test”."
        ),
    }
    return reasons.get(code, code)


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
        undelivered = _undelivered(channel, connection_id, limit)
        held = Message.objects.filter(
            conversation__channel_id=channel.id, undelivered_at__isnull=False
        ).count()
    return Delivery(recent=recent, counts=counts, open_dead_letters=dead, undelivered=undelivered, held=held)


def _undelivered(channel: Channel, connection_id: Any, limit: int) -> list[Undelivered]:
    """Held messages, open dead letters and platform-reported failures of the channel, newest first."""
    found: list[Undelivered] = []
    held = (
        Message.objects.filter(conversation__channel_id=channel.id, undelivered_at__isnull=False)
        .order_by("-undelivered_at")
        .values_list("undelivered_at", "undelivered_reason", "conversation_id")[:limit]
    )
    found += [Undelivered(at, _reason(code), _conversation(cid), "held") for at, code, cid in held]
    dead = (
        DeadLetter.objects.filter(
            connection_id=connection_id, stream=MESSAGES_STREAM, status=DeadLetterStatus.OPEN
        )
        .order_by("-created_at")
        .values_list("created_at", "error", "message__ordering_key")[:limit]
    )
    found += [Undelivered(at, _reason(error[:300]), _conversation(key), "dead") for at, error, key in dead]
    refused = (
        OutboxMessage.objects.filter(
            connection_id=connection_id, stream=MESSAGES_STREAM, payload__delivery__status="failed"
        )
        .order_by("-id")
        .values_list("delivered_at", "payload__delivery__error", "ordering_key")[:limit]
    )
    found += [
        Undelivered(
            at,
            _("WhatsApp refused it: the 24-hour window had closed before it was sent.")
            if error == "window_closed"
            else _reason(str(error or "")[:300]),
            _conversation(key),
            "refused",
        )
        for at, error, key in refused
    ]
    found.sort(key=lambda u: u.at.timestamp() if u.at else 0.0, reverse=True)
    return found[:limit]


def platform_connections(*, tenant: Any, channels: Any) -> dict[Any, Any]:
    """The platform Connections of `channels` (one query), by id: lists show them without a query each."""
    from apps.integrations.models import Connection

    ids = [c.platform_connection_id for c in channels if c.platform_connection_id is not None]
    if not ids:
        return {}
    with tenant_context(tenant):
        return {c.pk: c for c in Connection.objects.filter(pk__in=ids)}
