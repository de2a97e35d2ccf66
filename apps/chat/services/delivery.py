"""Later messages reach the customer through the channel they came from (issue 18).

A message that is not the answer of a turn (an agent's comment during a handoff, the bot's "you are back
with the assistant", a CSAT question) is stored first and then delivered by `message_deliver`: pushed to open
streams (web widget, chat API event stream), and for messaging platforms sent through the outbox on the
channel's platform account, under the platform's rules (WhatsApp's 24-hour window). Polling clients read it
with `?after=`. The caller stores the message and calls this in the same transaction; pushes happen on commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from django.db import transaction

from apps.chat.models import Conversation, Message
from apps.chat.services import widget
from apps.core.context import current_tenant


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a message left: "stream" (pushed to open streams; pollers read it), "platform" (outbox message
    queued on the platform account) or "held" (not deliverable now, with `reason` for the console)."""

    route: str
    reason: str = ""
    outbox_id: int | None = None


def message_deliver(*, conversation: Conversation, message: Message) -> Delivery:
    """Deliver a stored later message of `conversation`. Call inside the transaction that stored it."""
    event = widget.message_event(message)
    transaction.on_commit(
        partial(widget.message_publish, conversation_id=conversation.pk, event=event),
        using=current_tenant().db_alias,
    )
    return Delivery(route="stream")
