"""Business actions of a turn: order status from synced records, tickets, leads and handoffs via the outbox.

Nothing here calls a vendor on the request path: order status reads the hub's synced copy, and writes are
committed to the outbox in the turn's transaction, delivered by the relay later (a vendor outage delays
delivery, never the reply).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from apps.chat.principal import ChannelInfo
from apps.chat.services.identity import Identity, normalize_email, normalize_phone
from apps.integrations.models import Connection, SyncedRecord
from apps.integrations.resilience import breaker_for
from apps.integrations.services.outbox import outbox_enqueue

# Connector kinds that can take each action, in order of preference when the channel names none.
TICKET_KINDS = ("servicenow", "hubspot", "salesforce", "dynamics365")
LEAD_KINDS = ("salesforce", "hubspot", "dynamics365")


@dataclass(frozen=True)
class ActionResult:
    kind: str  # "create_ticket", "capture_lead", "handoff"
    status: str  # "queued" (captured, delivered by the relay) or "unavailable" (no connection configured)
    reference: str = ""
    connector: str = ""
    degraded: bool = False  # the vendor's breaker is open: delivery waits for it to recover
    outbox_id: int | None = None  # the queued outbox message (a handoff follows its ticket's delivery)
    ordering_key: str = ""

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


# Where an order record names its customer: the canonical "email" (also the record's email column) and
# "phone", or the same under a customer/contact prefix; else its contact, when it links one.
_ORDER_EMAIL_FIELDS = ("email", "customer_email", "contact_email")
_ORDER_PHONE_FIELDS = ("phone", "customer_phone", "contact_phone", "mobile")
_ORDER_CONTACT_FIELDS = ("contact_id", "customer_id")
_MAX_SAME_NUMBER = 5  # records with one number (several connections) checked for the user's own


def _contact_data(record: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The order's customer e-mails and phones, normalized; empty when the order names no contact."""
    fields = record["fields"] or {}
    emails = {normalize_email(fields.get(f)) for f in _ORDER_EMAIL_FIELDS}
    emails.add(normalize_email(record["email"]))
    phones = {normalize_phone(fields.get(f)) for f in _ORDER_PHONE_FIELDS}
    emails.discard("")
    phones.discard("")
    if emails or phones:
        return emails, phones
    linked = [str(fields[f]) for f in _ORDER_CONTACT_FIELDS if fields.get(f)]
    if linked:
        for contact in SyncedRecord.objects.filter(
            connection_id=record["connection_id"], stream="contacts", deleted=False, external_id__in=linked
        ).values("email", "fields"):
            contact_fields = contact["fields"] or {}
            emails |= {normalize_email(contact["email"]), normalize_email(contact_fields.get("email"))}
            phones |= {normalize_phone(contact_fields.get(f)) for f in _ORDER_PHONE_FIELDS}
    emails.discard("")
    phones.discard("")
    return emails, phones


def order_lookup(*, number: str, identity: Identity) -> OrderStatus | None:
    """The current tenant's synced order by number (vendors pad with zeros: 100 matches 00000100), only when
    its customer e-mail or phone is the verified user's: another customer's order is as absent as a missing
    one, and so is an order that names no contact (nothing to match it against)."""
    if not identity.has_contact:
        return None
    candidates = {number, number.lstrip("0") or "0"}
    if number.isdigit():
        candidates |= {number.zfill(8), number.zfill(10)}
    records = (
        SyncedRecord.objects.filter(stream="orders", deleted=False)
        .filter(Q(number__in=candidates) | Q(number=f"Order {number}"))
        .order_by("-updated_at")
        .values("connection_id", "number", "status", "email", "fields", "updated_at")[:_MAX_SAME_NUMBER]
    )
    for record in records:
        emails, phones = _contact_data(record)
        if not identity.matches(emails=emails, phones=phones):
            continue
        fields = record["fields"] or {}
        return OrderStatus(
            number=record["number"],
            status=record["status"] or str(fields.get("status", "")),
            amount=str(fields.get("amount", "") or ""),
            currency=str(fields.get("currency", "") or ""),
            updated_at=record["updated_at"],
        )
    return None


def _connection(*, preferred_id: Any, kinds: tuple[str, ...]) -> Connection | None:
    if preferred_id:
        return Connection.objects.filter(pk=preferred_id, enabled=True).first()
    found = list(Connection.objects.filter(enabled=True, kind__in=kinds).order_by("created_at"))
    found.sort(key=lambda c: kinds.index(c.kind))
    return found[0] if found else None


def ticket_connection(*, preferred_id: Any) -> Connection | None:
    """The channel's ticket connection when it names one, else the first enabled ticketing connection."""
    return _connection(preferred_id=preferred_id, kinds=TICKET_KINDS)


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
        outbox_id=message.pk,
        ordering_key=key,
    )


def requester_note(identity: Identity | None) -> str:
    """What a ticket or lead says about who asked: the verified identity, or that nobody vouched for it.

    Tickets and leads are new records made at the user's own request: they never change or link an existing
    contact, so an unverified user may create them; the team reads here whether the requester was verified.
    """
    if identity is None:
        return "Requester identity: not verified (anonymous chat user; check before sharing account data)."
    parts = [f"user id {identity.user_id}"]
    if identity.email:
        parts.append(f"e-mail {identity.email}")
    if identity.phone:
        parts.append(f"phone {identity.phone}")
    return "Requester identity: verified (" + ", ".join(parts) + ")."


def ticket_create(
    *,
    channel: ChannelInfo,
    conversation_id: Any,
    subject: str,
    description: str,
    locale: str,
    identity: Identity | None = None,
) -> ActionResult:
    connection = _connection(preferred_id=channel.ticket_connection_id, kinds=TICKET_KINDS)
    description = f"{requester_note(identity)}\n\n{description}"
    payload = {"subject": subject[:250], "description": description, "priority": "3"}
    return _enqueue(
        kind="create_ticket", connection=connection, stream="tickets", payload=payload,
        key=f"conversation:{conversation_id}:ticket",
    )  # fmt: skip


def lead_capture(
    *, channel: ChannelInfo, conversation_id: Any, email: str, note: str, identity: Identity | None = None
) -> ActionResult:
    """A new lead with the e-mail the user typed. It never updates or links an existing contact; it says
    whether that e-mail is the verified one (a typed address proves nothing: anyone can type anyone's)."""
    connection = _connection(preferred_id=channel.lead_connection_id, kinds=LEAD_KINDS)
    local = email.split("@", 1)[0]
    verified = identity is not None and bool(identity.email) and identity.email == normalize_email(email)
    state = "E-mail verified." if verified else "E-mail not verified (typed in the chat)."
    note = f"{state} {requester_note(identity)}\n\n{note}"
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
    *,
    channel: ChannelInfo,
    conversation_id: Any,
    transcript: str,
    intent: str,
    locale: str,
    reason: str,
    identity: Identity | None = None,
    connection: Connection | None = None,
    queue: str = "",
    number: int = 1,
) -> ActionResult:
    """A ticket a human can act on without asking again: transcript, detected intent, channel and locale,
    and whether the user's identity was verified. `connection` and `queue` are the handoff route's (default:
    the channel's ticket connection); `number` counts the conversation's handoffs, each its own ticket."""
    if connection is None:
        connection = _connection(preferred_id=channel.ticket_connection_id, kinds=TICKET_KINDS)
    description = (
        f"{requester_note(identity)}\n"
        f"Handoff requested from the {channel.kind} channel \u201c{channel.name}\u201d.\n"
        f"Conversation: {conversation_id}\nLocale: {locale}\nDetected intent: {intent or 'unknown'}\n"
        f"Reason: {reason or 'requested by the user'}\n\nTranscript:\n{transcript}"
    )
    payload = {
        "subject": f"Chat handoff ({channel.kind}, {locale})",
        "description": description,
        "priority": "2",
    }
    if queue:
        payload["queue"] = queue  # the canonical routing field (connectors/tickets.py)
    key = f"conversation:{conversation_id}:handoff" + (f":{number}" if number > 1 else "")
    return _enqueue(kind="handoff", connection=connection, stream="tickets", payload=payload, key=key)
