"""The handoff lifecycle (issue 18): a conversation handed to people on a vendor ticket, and back to the bot.

This module is the turn's side (open, the customer's messages, CSAT); services/handoff_thread.py the ticket's
side (learn the ticket, agents' comments, resume), which delivers later messages and so sits above the turn.

- **open** (`handoff_open`, from the turn or the explicit handoff request): the route decides the connection
  and queue; the ticket goes to the outbox; the Handoff row (state requested) commits with both.
- **learn the ticket**: once the ticket's outbox message is delivered the handoff knows the vendor's ticket id
  (state open); a dead-lettered ticket fails the handoff and gives the conversation back to the bot.
- **agent → customer** (`handoff_refresh`, by webhook or poll): read the ticket's thread from the cursor,
  store each public comment not written by the hub as an agent message, exactly once (advisory lock per
  handoff + the message idempotency key "agent:<comment id>"), deliver it, advance the cursor. A vendor outage
  leaves the cursor where it was: nothing is lost, the next refresh reads it again.
- **customer → agent** (`handoff_customer_message`): while handed off, the customer's message is stored and
  appended to the ticket through the outbox (ordered after the ticket, exactly once); the bot stays quiet.
- **resume**: ticket resolved/closed, or an agent's comment with HUB_HANDOFF_RESUME_PHRASE: the bot says so in
  the customer's language and, with HUB_HANDOFF_CSAT, asks for a 1-5 rating (`csat_record`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop as N_  # noqa: N812 - the gettext convention

from apps.chat import metrics_hooks
from apps.chat.models import (
    Conversation,
    Feedback,
    FeedbackKind,
    Handoff,
    HandoffRoute,
    HandoffState,
    Message,
    Role,
)
from apps.chat.principal import ChannelPrincipal
from apps.chat.services import actions, routing
from apps.chat.services.identity import Identity
from apps.core import sql
from apps.core.context import current_tenant
from apps.core.errors import Conflict, ValidationFailed
from apps.integrations.conf import connector_class
from apps.integrations.models import Connection, OutboxMessage
from apps.integrations.services.outbox import outbox_enqueue
from apps.observability import metrics
from apps.policies.services import redact_for_storage
from connectors.tickets import COMMENT_STREAM, comment_body, supports_threads

ACTIVE = (HandoffState.REQUESTED, HandoffState.OPEN)
#: The intent stored on the bot's CSAT question, and on the turn that answers it.
CSAT_INTENT = "csat"
#: A rating typed as the next message: a digit 1-5, or 1-5 stars.
_RATING = re.compile(r"^\s*(?:([1-5])(?:\s*/\s*5)?|(\u2605{1,5}|\u2b50{1,5}|\*{1,5}))\s*[.!]?\s*$")


#: A refresh that failed waits at least this long (the vendor is down or the ticket is gone).
@dataclass(frozen=True, slots=True)
class Opened:
    """What opening a handoff did: the outbox action, the route, the Handoff (None: nobody can take over)."""

    result: actions.ActionResult
    decision: routing.RouteDecision
    handoff: Handoff | None


def _t(locale: str, message: str, **params: Any) -> str:
    with translation.override(locale.split("-", 1)[0]):
        return _(message) % params if params else _(message)


def _lock(handoff_id: Any) -> None:
    tenant = current_tenant()
    sql.advisory_xact_lock(using=tenant.db_alias, key=sql.lock_key("chat-handoff", tenant.id, handoff_id))


def _poll_interval() -> timedelta:
    return timedelta(seconds=settings.HUB_HANDOFF_POLL_SECONDS)


# --- open -------------------------------------------------------------------------------------------------
def handoff_open(
    *,
    principal: ChannelPrincipal,
    conversation: Conversation,
    transcript: str,
    reason: str,
    identity: Identity | None,
    now: datetime | None = None,
) -> Opened:
    """Route and enqueue the handoff's ticket and record the Handoff. Call inside the turn's transaction."""
    now = now or timezone.now()
    decision = routing.handoff_route(
        channel=principal.channel, conversation=conversation, intent=conversation.last_intent, now=now
    )
    number = Handoff.objects.filter(conversation=conversation).count() + 1
    result = actions.handoff_ticket(
        channel=principal.channel,
        conversation_id=conversation.pk,
        transcript=transcript,
        intent=conversation.last_intent,
        locale=conversation.locale,
        reason=reason,
        identity=identity,
        connection=decision.connection,
        queue=decision.queue,
        number=number,
    )
    if result.status != "queued" or decision.connection is None:
        return Opened(result=result, decision=decision, handoff=None)
    handoff = Handoff.objects.create(
        conversation=conversation,
        state=HandoffState.REQUESTED,
        connection_id=decision.connection.pk,
        route_id=decision.route_id,
        queue=decision.queue,
        ticket_outbox_id=result.outbox_id,
        ticket_external_id=result.reference,
        outside_hours=decision.outside_hours,
        next_poll_at=now,
    )
    connector = decision.connection.kind
    transaction.on_commit(
        lambda: metrics_hooks.handoff_opened(
            principal=principal, connector=connector, locale=conversation.locale
        ),
        using=current_tenant().db_alias,
    )
    return Opened(result=result, decision=decision, handoff=handoff)


def outside_hours_note(*, decision: routing.RouteDecision, locale: str) -> str:
    """What the bot adds outside business hours: when a person will answer, in the customer's language and
    the route's time zone ("" within hours)."""
    if not decision.outside_hours:
        return ""
    if decision.next_open is None:
        return _t(
            locale, N_("Our team is not available right now; a person will answer as soon as possible.")
        )
    zone_name = "UTC"
    if decision.route_id is not None:
        route = HandoffRoute.objects.select_related("business_hours").filter(pk=decision.route_id).first()
        if route is not None and route.business_hours is not None:
            zone_name = route.business_hours.timezone or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone_name, zone = "UTC", ZoneInfo("UTC")
    local = timezone.localtime(decision.next_open, zone)
    with translation.override(locale.split("-", 1)[0]):
        when = formats.date_format(local, "DATETIME_FORMAT")
    return _t(
        locale,
        N_("Our team is not available right now; a person will answer from %(when)s (%(zone)s)."),
        when=when,
        zone=zone_name,
    )


# --- customer → agent --------------------------------------------------------------------------------------
def active_handoff(conversation: Conversation) -> Handoff | None:
    return Handoff.objects.filter(conversation=conversation, state__in=ACTIVE).first()


def handoff_customer_message(
    *, conversation: Conversation, stored_text: str, idempotency_key: str = ""
) -> tuple[Message, bool]:
    """Store a handed-off conversation's user message and append it to the ticket; the bot says nothing.

    Return the message and whether it is new (False: the Idempotency-Key was used before). The comment's
    outbox message follows the ticket's (same ordering key), so it is delivered after the ticket exists,
    in the order the customer wrote, once (its external id is the message's).
    """
    using = current_tenant().db_alias
    if idempotency_key:
        earlier = Message.objects.filter(conversation=conversation, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier, False
    try:
        with transaction.atomic(using=using):
            message = Message.objects.create(
                conversation=conversation,
                role=Role.USER,
                text=stored_text,
                idempotency_key=idempotency_key,
                intent="handoff",
            )
            handoff = active_handoff(conversation)
            if handoff is not None:
                _comment_enqueue(handoff, message)
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    except IntegrityError:
        if not idempotency_key:
            raise
        earlier = Message.objects.filter(conversation=conversation, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return earlier, False
    return message, True


def _comment_enqueue(handoff: Handoff, message: Message) -> OutboxMessage | None:
    connection = Connection.objects.filter(pk=handoff.connection_id).first()
    if connection is None or handoff.ticket_outbox_id is None:
        return None
    if not supports_threads(connector_class(connection.kind)):
        return None  # the connector cannot append to its tickets yet: the agents read the transcript
    ordering_key = (
        OutboxMessage.objects.filter(pk=handoff.ticket_outbox_id)
        .values_list("ordering_key", flat=True)
        .first()
    )
    if not ordering_key:
        return None
    queued = outbox_enqueue(
        connection=connection,
        stream=COMMENT_STREAM,
        payload={"ticket": handoff.ticket_external_id, "body": comment_body(message.text), "author": ""},
        ordering_key=ordering_key,
        external_id=f"{handoff.ticket_external_id}:m{message.pk}",
    )
    kind = connection.kind
    transaction.on_commit(
        lambda: metrics.record_handoff_message(direction="customer_out", connector=kind),
        using=current_tenant().db_alias,
    )
    return queued


# --- CSAT ---------------------------------------------------------------------------------------------------
def rating_of(text: str) -> int | None:
    """A typed rating: "1".."5", "4/5", or 1-5 stars; None for anything else."""
    found = _RATING.match(text or "")
    if found is None:
        return None
    return int(found.group(1)) if found.group(1) else len(found.group(2))


def csat_pending(conversation: Conversation) -> Handoff | None:
    """The handoff whose rating the bot asked for and that the customer has not answered with a message
    since (a rating is taken as the next message only)."""
    handoff = (
        Handoff.objects.filter(conversation=conversation, state=HandoffState.RESOLVED, csat_requested=True)
        .order_by("-resolved_at")
        .first()
    )
    if handoff is None or handoff.resolved_at is None:
        return None
    answered = Feedback.objects.filter(handoff=handoff, kind=FeedbackKind.CSAT).exists()
    spoke = Message.objects.filter(
        conversation=conversation, role=Role.USER, created_at__gt=handoff.resolved_at
    ).exists()
    return None if answered or spoke else handoff


def csat_record(*, conversation: Conversation, rating: int, comment: str = "") -> Feedback:
    """Store the customer's 1-5 rating of the conversation's latest handoff (see `csat_submit`)."""
    return csat_submit(conversation=conversation, rating=rating, comment=comment)[0]


def csat_submit(*, conversation: Conversation, rating: int, comment: str = "") -> tuple[Feedback, bool]:
    """Store the rating; return it and whether it is the handoff's first.

    One rating per handoff: a second one replaces the first (the customer changed their mind). Refused
    (Conflict) when no handoff of the conversation asked for one; a value outside 1-5 is a ValidationFailed.
    The comment is stored as transcripts are (redacted when the tenant's policy says so).
    """
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        message = _("Rate from 1 to 5.")
        raise ValidationFailed(message, {"rating": [message]})
    handoff = (
        Handoff.objects.filter(conversation=conversation, state=HandoffState.RESOLVED, csat_requested=True)
        .order_by("-resolved_at")
        .first()
    )
    if handoff is None:
        raise Conflict(_("There is no finished conversation with a colleague to rate."))
    tenant = current_tenant()
    comment = redact_for_storage(tenant=tenant, text=comment.strip())[:2000]
    with transaction.atomic(using=tenant.db_alias):
        _lock(handoff.pk)
        feedback = Feedback.objects.filter(handoff=handoff, kind=FeedbackKind.CSAT).first()
        if feedback is None:
            created = Feedback.objects.create(
                conversation=conversation,
                handoff=handoff,
                kind=FeedbackKind.CSAT,
                rating=rating,
                comment=comment,
            )
            return created, True
        feedback.rating, feedback.comment = rating, comment
        feedback.save(update_fields=["rating", "comment", "updated_at"])
        return feedback, False
