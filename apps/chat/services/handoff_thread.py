"""The ticket's side of a handoff (issue 18): learn the ticket, bring agents' comments to the customer.

`handoff_refresh` runs by webhook (integrations' ticket_activity signal), when the ticket's outbox message
settles (outbox_settled) and by poll (`handoffs_due`, beat every HUB_HANDOFF_POLL_SECONDS). It reads the
ticket's thread from the handoff's cursor with the connection's breaker and rate limits, stores each public
comment not written by the hub as an agent message exactly once (advisory lock per handoff + the idempotency
key "agent:<comment id>"), delivers it (services/delivery.py) and advances the cursor in the same
transaction. A vendor outage leaves the cursor where it was: nothing is lost, a later refresh reads it again.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop as N_  # noqa: N812 - the gettext convention
from redis.exceptions import RedisError

from apps.chat import metrics_hooks
from apps.chat.models import Conversation, ConversationStatus, Handoff, HandoffState, Message, Outcome, Role
from apps.chat.principal import tenant_locales
from apps.chat.services import delivery
from apps.chat.services.handoff import ACTIVE, CSAT_INTENT, _lock, _poll_interval, _t
from apps.core.context import current_tenant
from apps.integrations.conf import build_connector
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus
from apps.integrations.resilience import BreakerOpen, breaker_for, connection_session, redis_client
from apps.integrations.retry import failure_of
from apps.observability import metrics
from apps.tenants.models import Tenant
from connectors.base import Cursor
from connectors.errors import ConnectorError
from connectors.tickets import COMMENT_STREAM, TicketState, TicketThread, supports_threads

logger = logging.getLogger(__name__)

#: A refresh that failed permanently waits this long (the ticket is gone, the connection misconfigured).
_PERMANENT_BACKOFF = timedelta(minutes=10)
#: A connection whose vendor sent a verified webhook this recently is trusted to announce agent activity.
WEBHOOK_TRUST = timedelta(hours=1)
#: Vendor fields that name the ticket as agents know it (connectors' TicketThread.details).
_NUMBER_FIELDS = ("number", "ticket_number", "CaseNumber", "hs_ticket_id")


@dataclass(frozen=True, slots=True)
class Refreshed:
    """One refresh: agent messages delivered, the handoff's state after it, and why it stopped early."""

    delivered: int
    state: str
    error: str = ""


# --- the bot's later messages -------------------------------------------------------------------------------
def _bot_say(conversation: Conversation, text: str, *, intent: str = "handoff") -> Message:
    message = Message.objects.create(
        conversation=conversation, role=Role.ASSISTANT, text=text, intent=intent, outcome=Outcome.HANDOFF
    )
    delivery.message_deliver(conversation=conversation, message=message)
    return message


def _give_back(handoff: Handoff, *, state: str, resolution: str, now: datetime) -> None:
    handoff.state, handoff.resolution, handoff.resolved_at, handoff.next_poll_at = (
        state,
        resolution,
        now,
        None,
    )
    Conversation.objects.filter(pk=handoff.conversation_id, status=ConversationStatus.HANDOFF).update(
        status=ConversationStatus.OPEN, updated_at=now
    )
    handoff.conversation.status = ConversationStatus.OPEN


def _fail(handoff: Handoff, *, connector: str, now: datetime) -> None:
    """The ticket could not be created: the bot is back and says so."""
    _give_back(handoff, state=HandoffState.FAILED, resolution="failed", now=now)
    locale = handoff.conversation.locale
    _bot_say(
        handoff.conversation,
        _t(
            locale,
            N_(
                "Sorry, I could not pass your request on to a colleague. You are chatting with the assistant "
                "again; please try again later or contact support directly."
            ),
        ),
    )
    handoff.save(update_fields=["state", "resolution", "resolved_at", "next_poll_at", "updated_at"])
    _comments_discard(handoff, now=now)
    _count_ended(handoff, event="failed", connector=connector)


#: Why a customer's comment was not appended (the outbox row's last error, shown with the outbox's).
NO_TICKET = "The handoff's ticket could not be created; the comment was not appended."


def _comments_discard(handoff: Handoff, *, now: datetime) -> int:
    """Discard the customer's comments still waiting behind a ticket that will never exist (they would wait
    for their dead predecessor for ever); the messages stay in the conversation."""
    if handoff.ticket_outbox_id is None:
        return 0
    ticket = OutboxMessage.objects.filter(pk=handoff.ticket_outbox_id)
    key = ticket.values_list("ordering_key", flat=True).first()
    if not key:
        return 0
    return OutboxMessage.objects.filter(
        ordering_key=key, stream=COMMENT_STREAM, status__in=(OutboxStatus.PENDING, OutboxStatus.DELIVERING)
    ).update(status=OutboxStatus.DISCARDED, last_error=NO_TICKET, updated_at=now)


def _resume(handoff: Handoff, *, resolution: str, connector: str, now: datetime) -> None:
    """The agents are done: the bot takes the conversation back, says so, and asks for a rating."""
    _give_back(handoff, state=HandoffState.RESOLVED, resolution=resolution, now=now)
    locale = handoff.conversation.locale
    _bot_say(
        handoff.conversation,
        _t(locale, N_("Our colleague has finished helping you. You are chatting with the assistant again.")),
    )
    if settings.HUB_HANDOFF_CSAT:
        handoff.csat_requested = True
        _bot_say(
            handoff.conversation,
            _t(
                locale,
                N_(
                    "How satisfied are you with the help you received? Reply with a number from 1 (not at "
                    "all) to 5 (very)."
                ),
            ),
            intent=CSAT_INTENT,
        )
    handoff.save(
        update_fields=["state", "resolution", "resolved_at", "next_poll_at", "csat_requested", "updated_at"]
    )
    _count_ended(handoff, event="resolved", connector=connector)


def _count_ended(handoff: Handoff, *, event: str, connector: str) -> None:
    """Count a handoff's end in its conversation's language. A worker has no principal: the tenant's locales
    are read here, once per ended handoff (not per turn)."""
    tenant = Tenant.objects.filter(pk=current_tenant().id).only("default_locale", "enabled_locales").first()
    metrics_hooks.handoff_ended(
        event=event,
        connector=connector,
        locale=handoff.conversation.locale,
        locales=tenant_locales(tenant) if tenant is not None else (),
    )


# --- learn the ticket ---------------------------------------------------------------------------------------
def _learn(handoff: Handoff, *, connector: str, now: datetime) -> None:
    """A requested handoff's ticket was delivered (open) or dead-lettered (failed), else still requested."""
    ticket = (
        OutboxMessage.objects.filter(pk=handoff.ticket_outbox_id).values("status", "vendor_id").first()
        if handoff.ticket_outbox_id
        else None
    )
    if ticket is None or ticket["status"] in (OutboxStatus.DEAD, OutboxStatus.DISCARDED):
        _fail(handoff, connector=connector, now=now)
    elif ticket["status"] == OutboxStatus.DELIVERED and ticket["vendor_id"]:
        handoff.state, handoff.ticket_vendor_id = HandoffState.OPEN, ticket["vendor_id"][:255]
        handoff.save(update_fields=["state", "ticket_vendor_id", "updated_at"])


# --- agent → customer --------------------------------------------------------------------------------------
def resume_phrase_strip(body: str) -> tuple[str, bool]:
    """The comment without the tenant's resume phrase (case-insensitive), and whether it was there."""
    phrase = settings.HUB_HANDOFF_RESUME_PHRASE
    if not phrase:
        return body.strip(), False
    pattern = re.compile(re.escape(phrase), re.IGNORECASE)
    stripped, found = pattern.subn("", body)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip(), found > 0


def _agent_message(handoff: Handoff, *, comment_id: str, text: str, author: str) -> Message | None:
    """Store an agent's comment once (None when it is stored already: a webhook and a poll read it both)."""
    key = f"agent:{comment_id}"[:128]
    conversation = handoff.conversation
    if Message.objects.filter(conversation=conversation, idempotency_key=key).exists():
        return None
    try:
        with transaction.atomic(using=current_tenant().db_alias):
            return Message.objects.create(
                conversation=conversation,
                role=Role.AGENT,
                text=text,
                author=author[:200],
                idempotency_key=key,
                intent="handoff",
            )
    except IntegrityError:
        return None  # the unique index: stored by a refresh that did not hold the lock (cannot happen today)


def _webhook_key(connection_id: Any) -> str:
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    return f"{prefix}:handoff:webhooks:{current_tenant().id}:{connection_id}"


def webhook_seen(*, connection_id: Any) -> None:
    """Remember (Redis, WEBHOOK_TRUST) that this connection's vendor announces ticket activity by webhook."""
    try:
        redis_client().set(_webhook_key(connection_id), 1, ex=int(WEBHOOK_TRUST.total_seconds()))
    except RedisError:
        logger.warning("handoff: webhook arrival not recorded: Redis is unavailable")


def poll_interval_for(*, connection_id: Any) -> timedelta:
    """How long until a handoff's thread is read again without a webhook: HUB_HANDOFF_POLL_SECONDS, or
    HUB_HANDOFF_WEBHOOK_POLL_SECONDS while the connection's webhooks arrive (a safety net for a lost one:
    with a thousand open tickets a 15-second poll alone would spend a vendor's whole API allowance)."""
    try:
        trusted = bool(redis_client().exists(_webhook_key(connection_id)))
    except RedisError:
        trusted = False  # unknown: poll at the short interval, nothing waits longer than before
    if trusted:
        return timedelta(
            seconds=max(settings.HUB_HANDOFF_WEBHOOK_POLL_SECONDS, settings.HUB_HANDOFF_POLL_SECONDS)
        )
    return _poll_interval()


def _apply_thread(handoff: Handoff, thread: TicketThread, *, connector: str, now: datetime) -> int:
    """Deliver the thread's new public comments, advance the cursor, resume when the agents are done."""
    delivered = 0
    resolution = ""
    for comment in thread.comments:
        if not comment.public or comment.from_hub:
            continue  # internal notes never reach the customer; the customer's own words never echo back
        text, asked_resume = resume_phrase_strip(comment.body)
        if asked_resume:
            resolution = "phrase"
        if not text:
            continue
        message = _agent_message(handoff, comment_id=comment.id, text=text, author=comment.author)
        if message is None:
            continue
        delivery.message_deliver(conversation=handoff.conversation, message=message)
        delivered += 1
        metrics.record_handoff_message(direction="agent_in", connector=connector)
        if handoff.first_agent_reply_at is None:
            handoff.first_agent_reply_at = now
            metrics.observe_handoff_first_reply(
                connector=connector, seconds=(now - handoff.created_at).total_seconds()
            )
    handoff.thread_cursor = thread.cursor.to_json()
    for name in _NUMBER_FIELDS:
        if thread.details.get(name):
            handoff.ticket_number = str(thread.details[name])[:64]
            break
    handoff.polled_at = now
    handoff.next_poll_at = now + poll_interval_for(connection_id=handoff.connection_id)
    fields = ["thread_cursor", "ticket_number", "polled_at", "next_poll_at", "first_agent_reply_at"]
    handoff.save(update_fields=[*fields, "updated_at"])
    if thread.state in (TicketState.RESOLVED, TicketState.CLOSED):
        resolution = thread.state.value
    if resolution:
        _resume(handoff, resolution=resolution, connector=connector, now=now)
    return delivered


def _read_thread(connection: Connection, handoff: Handoff) -> TicketThread | None:
    """The ticket's thread from the handoff's cursor, through the connection's breaker and rate limits
    (built the way the outbox courier builds it); None when the connector cannot carry a handoff."""
    connector = build_connector(connection, session=connection_session(connection))
    if not supports_threads(connector):
        return None
    return connector.ticket_thread(  # type: ignore[attr-defined]
        handoff.ticket_vendor_id, cursor=Cursor.from_json(handoff.thread_cursor)
    )


def handoff_refresh(*, handoff_id: Any) -> Refreshed | None:
    """Bring an active handoff up to date: learn its ticket, deliver new agent comments, resume when done.

    Safe to run concurrently (webhook- and poll-triggered): refreshes of one handoff take turns on an
    advisory lock, and each comment is stored once. The vendor is read outside any transaction (no
    database connection waits in a transaction on a slow vendor); its thread is applied only if no other
    refresh moved the cursor meanwhile (that one delivered the same comments). Call inside the tenant's
    context (the task does).
    """
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        _lock(handoff_id)
        handoff = Handoff.objects.select_related("conversation").filter(pk=handoff_id).first()
        if handoff is None or handoff.state not in ACTIVE:
            return None
        now = timezone.now()
        connection = Connection.objects.filter(pk=handoff.connection_id).first()
        kind = connection.kind if connection is not None else "unknown"
        if handoff.state == HandoffState.REQUESTED:
            _learn(handoff, connector=kind, now=now)
            if handoff.state != HandoffState.OPEN:
                return Refreshed(delivered=0, state=handoff.state)
        if connection is None:
            _fail(handoff, connector=kind, now=now)  # the connection was deleted: nobody can answer
            return Refreshed(delivered=0, state=handoff.state, error="connection deleted")
    read_from = handoff.thread_cursor
    try:
        thread = _read_thread(connection, handoff)
    except (ConnectorError, BreakerOpen, RedisError) as exc:
        failure = failure_of(exc, secrets=list(connection.secrets.values()))
        wait = (
            max(_poll_interval(), timedelta(seconds=failure.retry_after or 0))
            if failure.transient
            else _PERMANENT_BACKOFF
        )
        _poll_later(handoff, until=timezone.now() + wait)
        logger.info(
            "handoff %s: ticket thread not read (%s), next try in %ss",
            handoff.pk,
            "transient" if failure.transient else "permanent",
            int(wait.total_seconds()),
        )
        return Refreshed(delivered=0, state=handoff.state, error=failure.message)
    if thread is None:
        _poll_later(handoff, until=timezone.now() + _PERMANENT_BACKOFF)
        return Refreshed(delivered=0, state=handoff.state, error="the connector cannot read ticket threads")
    with transaction.atomic(using=tenant.db_alias):
        _lock(handoff_id)
        current = Handoff.objects.select_related("conversation").filter(pk=handoff_id).first()
        if current is None or current.state not in ACTIVE or current.thread_cursor != read_from:
            # Finished, or another refresh applied a newer read meanwhile: ours would move the cursor back.
            return Refreshed(delivered=0, state=current.state if current is not None else "")
        delivered = _apply_thread(current, thread, connector=kind, now=timezone.now())
        return Refreshed(delivered=delivered, state=current.state)


def _poll_later(handoff: Handoff, *, until: datetime) -> None:
    Handoff.objects.filter(pk=handoff.pk).update(next_poll_at=until, updated_at=timezone.now())


def handoffs_for_tickets(*, connection_id: Any, ticket_ids: list[str]) -> list[int]:
    """The active handoffs on these vendor tickets of the connection (current tenant only)."""
    return list(
        Handoff.objects.filter(
            connection_id=connection_id, ticket_vendor_id__in=ticket_ids, state__in=ACTIVE
        ).values_list("pk", flat=True)
    )


def handoff_for_ticket_message(message: OutboxMessage) -> int | None:
    """The requested handoff whose ticket is this outbox message (None for every other message: cheap)."""
    parts = message.ordering_key.split(":")
    if message.stream != "tickets" or len(parts) < 3 or parts[0] != "conversation" or parts[2] != "handoff":
        return None
    try:
        conversation_id = uuid.UUID(parts[1])
    except ValueError:
        return None
    return (
        Handoff.objects.filter(
            conversation_id=conversation_id, ticket_outbox_id=message.pk, state=HandoffState.REQUESTED
        )
        .values_list("pk", flat=True)
        .first()
    )


def handoffs_due(*, now: datetime | None = None, limit: int | None = None) -> list[tuple[int, int]]:
    """Claim the active handoffs whose poll is due, in every region: (tenant id, handoff id) each.

    Claiming moves `next_poll_at` one interval on, so the next beat does not queue them again while their
    refresh waits in the queue. Handoffs on a connection whose breaker is open wait for it (the refresh
    would be refused anyway) — except requested ones, which only look at the outbox.
    """
    from apps.tenants.models import Tenant

    now = now or timezone.now()
    limit = limit or settings.HUB_HANDOFF_POLL_BATCH
    tenants = Tenant.objects.select_related("home_region").filter(is_active=True)
    ids = [t.id for t in tenants]
    claimed: list[tuple[int, int]] = []
    for alias in sorted({t.home_region.db_alias for t in tenants}):
        manager = Handoff.all_tenants.db_manager(alias)
        with transaction.atomic(using=alias):
            rows = list(
                manager.filter(state__in=ACTIVE, next_poll_at__lte=now, tenant_id__in=ids)
                .select_for_update(skip_locked=True)
                .order_by("next_poll_at")
                .values_list("pk", "tenant_id", "connection_id", "state")[:limit]
            )
            open_breakers = _open_breakers(alias, {(t, c) for _pk, t, c, _s in rows})
            chosen = [
                (tenant_id, pk)
                for pk, tenant_id, connection_id, state in rows
                if state == HandoffState.REQUESTED or (tenant_id, connection_id) not in open_breakers
            ]
            if rows:
                manager.filter(pk__in=[pk for pk, *_ in rows]).update(next_poll_at=now + _poll_interval())
        claimed.extend(chosen)
    return claimed


def _open_breakers(alias: str, pairs: set[tuple[int, Any]]) -> set[tuple[int, Any]]:
    if not pairs:
        return set()
    connection_ids = {c for _t, c in pairs}
    found = set()
    for connection in Connection.all_tenants.db_manager(alias).filter(pk__in=connection_ids):
        try:
            state = breaker_for(connection).state()
        except RedisError:
            continue  # unknown: try the refresh, the session's breaker decides
        if state.state == "open" and state.retry_at is not None and state.retry_at > timezone.now():
            found.add((connection.tenant_id, connection.pk))
    return found
