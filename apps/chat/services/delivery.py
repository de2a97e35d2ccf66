"""Later messages reach the customer through the channel they came from (issue 18).

A message that is not the answer of a turn (an agent's comment during a handoff, the bot's "you are back
with the assistant", a CSAT question) is stored first and then delivered by `message_deliver`:

- every channel: pushed on commit to the conversation's open streams (the web widget's and the chat API's
  event stream share one Redis channel); pollers read it with `GET .../messages?after=`;
- messaging platforms (WhatsApp, Slack, Teams, SMS): also sent through the outbox on the channel's platform
  account (stream "messages", ordered per conversation, retried, dead-lettered), cut to the platform's
  longest text like the bot's replies. An agent's name prefixes the text ("Anna: ...") because a platform
  shows every message as the bot's; the widget and the API carry it as `author` instead;
- WhatsApp's 24-hour customer service window: free text only within 24 h of the customer's last message.
  After that the account's approved template for late replies carries the text; without one the message is
  held: marked undeliverable on the Message (`undelivered_reason`, `undelivered_at`), counted, and listed on
  the channel's console page with the reason.

The caller stores the message and calls this in the same transaction: the outbox message commits with it
(or neither does), and pushes happen on commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.services import audit_record
from apps.chat.models import Channel, ChannelKind, Conversation, Message, Role
from apps.chat.services import widget
from apps.chat.services.channels import require_channel_manager
from apps.chat.services.platform import channel_adapter_class, reply_parts
from apps.core.context import current_tenant, tenant_context
from apps.integrations.models import Connection, OutboxMessage
from apps.integrations.services.outbox import outbox_enqueue
from apps.observability import metrics
from connectors.errors import InvalidConfig
from connectors.messaging_connector import MESSAGES
from connectors.whatsapp.channel import TEMPLATE_PARAM_MAX

logger = logging.getLogger(__name__)

PLATFORM_KINDS = frozenset({ChannelKind.WHATSAPP, ChannelKind.SLACK, ChannelKind.TEAMS, ChannelKind.SMS})
#: WhatsApp's customer service window, and how much of its end we do not count on: the outbox sends a few
#: seconds to minutes after the decision (longer in an outage, when the connector falls back to the template).
WINDOW = timedelta(hours=24)
WINDOW_MARGIN = timedelta(minutes=5)

#: Why a message was held (Message.undelivered_reason).
NO_ACCOUNT = "no_account"  # the channel has no platform account (any more)
NO_ADDRESS = "no_address"  # the conversation has no reply address on the platform
WINDOW_CLOSED = "window_closed"  # WhatsApp: outside the 24-hour window and no template configured
BAD_ACCOUNT = "bad_account"  # the platform account's settings or credentials are unusable (fix, test, retry)


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a message left: "stream" (pushed to open streams; pollers read it), "platform" (outbox message
    queued on the platform account) or "held" (not deliverable now, with `reason` for the console)."""

    route: str
    reason: str = ""
    outbox_id: int | None = None


def message_deliver(*, conversation: Conversation, message: Message) -> Delivery:
    """Deliver a stored later message of `conversation`. Call inside the transaction that stored it."""
    alias = current_tenant().db_alias
    event = widget.message_event(message)
    transaction.on_commit(
        partial(widget.message_publish, conversation_id=conversation.pk, event=event), using=alias
    )
    if conversation.channel_kind not in PLATFORM_KINDS:
        return Delivery(route="stream")
    return _platform_deliver(conversation, message)


def platform_text(message: Message) -> str:
    """The text a platform shows: an agent's name first, since the platform shows it as the bot's."""
    if message.role == Role.AGENT and message.author.strip():
        return f"{message.author.strip()}: {message.text}"
    return message.text


def window_open(*, conversation: Conversation, now: datetime | None = None) -> bool:
    """Whether WhatsApp still takes free text: the customer wrote within the window (less the margin)."""
    last = (
        Message.objects.filter(conversation=conversation, role=Role.USER)
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    now = now or timezone.now()
    return last is not None and now - last < WINDOW - WINDOW_MARGIN


def _platform_deliver(conversation: Conversation, message: Message) -> Delivery:
    kind = conversation.channel_kind
    channel = Channel.objects.filter(pk=conversation.channel_id).only("platform_connection_id").first()
    connection = None
    if channel is not None and channel.platform_connection_id:
        connection = Connection.objects.filter(pk=channel.platform_connection_id, kind=kind).first()
    if connection is None:
        return _held(message, kind=kind, reason=NO_ACCOUNT)
    reply_ref = _reply_ref(conversation)
    if not reply_ref:
        return _held(message, kind=kind, reason=NO_ADDRESS)
    existing = (
        OutboxMessage.objects.filter(
            connection=connection,
            stream=MESSAGES,
            ordering_key=str(conversation.pk),
            payload__message_id=message.pk,
        )
        .values_list("pk", flat=True)
        .first()
    )
    if existing is not None:  # delivered before (a caller's retry): never send it twice
        return Delivery(route="platform", outbox_id=existing)
    try:  # the outbox checks the config too: a bad account holds the message instead of failing the caller
        config = connection.connector_config()
    except InvalidConfig:
        return _held(message, kind=kind, reason=BAD_ACCOUNT)
    template = False
    limit = int(channel_adapter_class(connection).max_text)
    if kind == ChannelKind.WHATSAPP and not window_open(conversation=conversation):
        if not str(config.get("agent_template") or "").strip():
            return _held(message, kind=kind, reason=WINDOW_CLOSED)
        template, limit = True, TEMPLATE_PARAM_MAX
    parts = reply_parts({"text": platform_text(message), "citations": message.citations or []}, limit)
    first: int | None = None
    for part in parts:
        payload: dict[str, Any] = {"reply_ref": reply_ref, "text": part, "message_id": message.pk}
        if template:
            payload["template"] = True
        queued = outbox_enqueue(
            connection=connection, stream=MESSAGES, payload=payload, ordering_key=str(conversation.pk)
        )
        first = queued.pk if first is None else first
        _count_on_commit(kind, "template" if template else "enqueued")
    return Delivery(route="platform", reason=WINDOW_CLOSED if template else "", outbox_id=first)


def _count_on_commit(kind: str, outcome: str) -> None:
    """Count an outbound message once the caller's transaction commits (a rollback sent nothing)."""
    transaction.on_commit(
        partial(metrics.record_channel_message, kind=kind, direction="out", outcome=outcome),
        using=current_tenant().db_alias,
    )


def _reply_ref(conversation: Conversation) -> dict[str, Any]:
    try:
        ref = json.loads(conversation.reply_ref or "{}")
    except ValueError:
        return {}
    return ref if isinstance(ref, dict) else {}


def _held(message: Message, *, kind: str, reason: str) -> Delivery:
    """Mark the message undeliverable (the console lists it with the reason) and count it."""
    Message.objects.filter(pk=message.pk).update(undelivered_reason=reason, undelivered_at=timezone.now())
    _count_on_commit(kind, "held")
    logger.info("later message held", extra={"message_id": message.pk, "reason": reason})
    return Delivery(route="held", reason=reason)


#: Held messages sent again per console request, oldest first (the rest on the next request).
RETRY_BATCH = 200


def conversation_held_resend(*, conversation: Conversation) -> int:
    """The customer wrote again (on WhatsApp the 24-hour window is open anew): deliver the conversation's
    held messages again, oldest first, ahead of the answer to what they wrote. Returns how many left.
    Call inside the transaction that stores or answers the customer's message."""
    rows = list(
        Message.objects.filter(conversation=conversation, undelivered_at__isnull=False).order_by("id")[
            :RETRY_BATCH
        ]
    )
    sent = 0
    for message in rows:
        Message.objects.filter(pk=message.pk).update(undelivered_reason="", undelivered_at=None)
        if message_deliver(conversation=conversation, message=message).route != "held":
            sent += 1
    return sent


@dataclass(frozen=True, slots=True)
class Retried:
    sent: int
    held: int


def held_messages_retry(
    *, channel: Channel, actor: Any = None, request: HttpRequest | None = None
) -> Retried:
    """Deliver the channel's held messages again, oldest first (after a template was set, or the customer
    wrote again): each is unmarked and delivered anew, and held again if it still cannot go. Audited."""
    require_channel_manager(tenant=channel.tenant, actor=actor)
    sent = held = 0
    with tenant_context(channel.tenant) as tenant:
        rows = list(
            Message.objects.filter(conversation__channel_id=channel.id, undelivered_at__isnull=False)
            .select_related("conversation")
            .order_by("id")[:RETRY_BATCH]
        )
        for message in rows:
            with transaction.atomic(using=tenant.db_alias):
                Message.objects.filter(pk=message.pk).update(undelivered_reason="", undelivered_at=None)
                delivery = message_deliver(conversation=message.conversation, message=message)
            if delivery.route == "held":
                held += 1
            else:
                sent += 1
        if rows:
            audit_record(
                "channel.undelivered_retried",
                tenant=channel.tenant,
                actor=actor,
                request=request,
                target=channel,
                changes={"sent": sent, "held": held},
            )
    return Retried(sent=sent, held=held)
