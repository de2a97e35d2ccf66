"""Business actions of a turn: order status from synced records, tickets, leads and handoffs via the outbox.

Nothing here calls a vendor on the request path: order status reads the hub's synced copy, and writes are
committed to the outbox in the turn's transaction, delivered by the relay later (a vendor outage delays
delivery, never the reply).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from apps.chat.principal import ChannelInfo
from apps.integrations.models import Connection, SyncedRecord
from apps.integrations.resilience import breaker_for
from apps.integrations.services.outbox import outbox_enqueue

# Connector kinds that can take each action, in order of preference when the channel names none.
TICKET_KINDS = ("servicenow", "hubspot", "salesforce")
LEAD_KINDS = ("salesforce", "hubspot")


@dataclass(frozen=True)
class ActionResult:
    kind: str  # "create_ticket", "capture_lead", "handoff"
    status: str  # "queued" (captured, delivered by the relay) or "unavailable" (no connection configured)
    reference: str = ""
    connector: str = ""
    degraded: bool = False  # the vendor's breaker is open: delivery waits for it to recover

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind, "status": self.status}
        if self.reference:
            data["reference"] = self.reference
        if self.connector:
            data["connector"] = self.connector
        if self.degraded:
            data["degraded"] = True
        return data


@dataclass(frozen=True)
class OrderStatus:
    number: str
    status: str
    amount: str
    currency: str
    updated_at: Any


def order_lookup(*, number: str) -> OrderStatus | None:
    """The current tenant's synced order by number (vendors pad with zeros: 100 matches 00000100)."""
    candidates = {number, number.lstrip("0") or "0"}
    if number.isdigit():
        candidates |= {number.zfill(8), number.zfill(10)}
    record = (
        SyncedRecord.objects.filter(stream="orders", deleted=False)
        .filter(Q(number__in=candidates) | Q(number=f"Order {number}"))
        .order_by("-updated_at")
        .values("number", "status", "fields", "updated_at")
        .first()
    )
    if record is None:
        return None
    fields = record["fields"] or {}
    return OrderStatus(
        number=record["number"],
        status=record["status"] or str(fields.get("status", "")),
        amount=str(fields.get("amount", "") or ""),
        currency=str(fields.get("currency", "") or ""),
        updated_at=record["updated_at"],
    )


def _connection(*, preferred_id: Any, kinds: tuple[str, ...]) -> Connection | None:
    if preferred_id:
        return Connection.objects.filter(pk=preferred_id, enabled=True).first()
    found = list(Connection.objects.filter(enabled=True, kind__in=kinds).order_by("created_at"))
    found.sort(key=lambda c: kinds.index(c.kind))
    return found[0] if found else None


def _enqueue(
    *, kind: str, connection: Connection | None, stream: str, payload: dict[str, Any], key: str
) -> ActionResult:
    if connection is None:
        return ActionResult(kind=kind, status="unavailable")
    message = outbox_enqueue(connection=connection, stream=stream, payload=payload, ordering_key=key)
    state = breaker_for(connection).state()
    return ActionResult(
        kind=kind,
        status="queued",
        reference=message.external_id,
        connector=connection.kind,
        degraded=state.state != "closed",
    )


def ticket_create(
    *, channel: ChannelInfo, conversation_id: Any, subject: str, description: str, locale: str
) -> ActionResult:
    connection = _connection(preferred_id=channel.ticket_connection_id, kinds=TICKET_KINDS)
    payload = {"subject": subject[:250], "description": description, "priority": "3"}
    return _enqueue(
        kind="create_ticket", connection=connection, stream="tickets", payload=payload,
        key=f"conversation:{conversation_id}:ticket",
    )  # fmt: skip


def lead_capture(*, channel: ChannelInfo, conversation_id: Any, email: str, note: str) -> ActionResult:
    connection = _connection(preferred_id=channel.lead_connection_id, kinds=LEAD_KINDS)
    local = email.split("@", 1)[0]
    payload = {
        "email": email,
        "last_name": local[:80] or "Unknown",
        "company": email.split("@", 1)[-1][:80],
        "source": f"chat:{channel.kind}",
        "description": note,
    }
    return _enqueue(
        kind="capture_lead", connection=connection, stream="leads", payload=payload,
        key=f"conversation:{conversation_id}:lead",
    )  # fmt: skip


def handoff_ticket(
    *, channel: ChannelInfo, conversation_id: Any, transcript: str, intent: str, locale: str, reason: str
) -> ActionResult:
    """A ticket a human can act on without asking again: transcript, detected intent, channel and locale."""
    connection = _connection(preferred_id=channel.ticket_connection_id, kinds=TICKET_KINDS)
    description = (
        f"Handoff requested from the {channel.kind} channel \u201c{channel.name}\u201d.\n"
        f"Conversation: {conversation_id}\nLocale: {locale}\nDetected intent: {intent or 'unknown'}\n"
        f"Reason: {reason or 'requested by the user'}\n\nTranscript:\n{transcript}"
    )
    payload = {
        "subject": f"Chat handoff ({channel.kind}, {locale})",
        "description": description,
        "priority": "2",
    }
    return _enqueue(
        kind="handoff", connection=connection, stream="tickets", payload=payload,
        key=f"conversation:{conversation_id}:handoff",
    )  # fmt: skip
