"""Messaging platforms in and out: a platform message → an InboundEvent → a turn → the reply in the outbox.

The loop (docs/architecture.md, "Channels"):

1. The webhook view (apps/chat/webhook_views.py) verifies and parses the request with the channel's adapter
   and calls `channel_events_accept`: each message becomes an `InboundEvent` row (its unique constraint on
   the platform message id absorbs the platform's retries) and a Celery task published after the commit.
   Status reports on our own sent messages are recorded on their outbox message.
2. The task calls `channel_inbound_process`: find or start the conversation of the platform's conversation
   key, run the turn through the chat API's own turn service (idempotency key `<kind>:<platform id>`, so a
   redelivered task replays the stored answer), and enqueue the reply on the platform account's outbox
   stream "messages" in the same transaction that marks the event done: the reply is enqueued exactly once.
3. The outbox delivers it (retries with backoff, breaker per account, dead letters). Across a crash between
   the platform's answer and the outbox's commit a reply can be sent twice: platforms have no upsert.
4. `channel_inbound_requeue_stale` (beat, every 60 s) publishes again the events whose task was lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from redis.exceptions import RedisError

from apps.chat.models import (
    Channel,
    Conversation,
    ConversationStatus,
    InboundEvent,
    InboundStatus,
    Message,
)
from apps.chat.principal import ChannelPrincipal, channel_principal, tenant_locales
from apps.chat.retention import user_ref_hash
from apps.chat.selectors.channel_inbound import PLATFORM_KINDS, ChannelEndpoint
from apps.chat.services import delivery
from apps.chat.services.conversations import ChatInputError, conversation_start, message_post
from apps.chat.services.handoff import handoff_customer_message
from apps.chat.services.identity import PLATFORM_USER_KINDS, normalize_email, platform_identity
from apps.chat.services.platform import max_text, reply_parts, split_text
from apps.core import sql
from apps.core.context import as_ref, current_tenant
from apps.core.tasks import BROKER_ERRORS, task_enqueue, task_enqueue_on_commit
from apps.integrations.conf import connector_class
from apps.integrations.models import Connection, OutboxMessage
from apps.integrations.resilience import BucketConfig, TokenBucket, connection_session
from apps.integrations.retry import jittered_backoff
from apps.integrations.services.outbox import outbox_enqueue
from apps.observability import metrics
from apps.policies.services import redact_for_storage
from apps.security import crypto
from connectors.errors import ConnectorError, InvalidConfig
from connectors.messaging import ChannelAdapter, Inbound, StatusUpdate, WebhookEvents
from connectors.messaging_connector import MESSAGES, MessagingConnector

logger = logging.getLogger(__name__)

#: Per source address: platforms send every tenant's webhooks from shared egress addresses.
IP_RATE = BucketConfig(capacity=600, rate=100.0)
#: Per channel: a platform's retry burst passes, a flood does not.
CHANNEL_RATE = BucketConfig(capacity=300, rate=30.0)
#: An event still queued after this long lost its task (broker down at publish, worker died): publish again.
REQUEUE_AFTER_SECONDS = 60
#: Tries of one event before it is marked failed (transient errors: database, Redis, a broker hiccup).
MAX_ATTEMPTS = 5
RETRY_BASE_MS = 1000.0
RETRY_CAP_SECONDS = 60.0
#: Key-cache entries (Teams' OpenID metadata and signing keys) live in the shared cache under this prefix.
KEY_CACHE_PREFIX = "chat:channel-keys:"
#: Seconds a Slack/Teams user's directory e-mail stays in the shared cache; an answer without one, less long.
PLATFORM_EMAIL_TTL = 3600
PLATFORM_EMAIL_MISS_TTL = 300
#: Order of the platforms' delivery statuses: a late "delivered" never overwrites "read".
STATUS_RANK = {"accepted": 0, "queued": 0, "sending": 1, "sent": 1, "delivered": 2, "read": 3}
CHANNEL_INBOUND_TASK = "apps.chat.tasks.channel_inbound_task"
CHANNEL_STATUS_TASK = "apps.chat.tasks.channel_status_task"
#: A status report on a message the outbox has not recorded as sent yet (the platform answered the send, its
#: report raced the outbox's commit) is tried again after these delays, in seconds (about 4 minutes in all):
#: then it is counted as unmatched and dropped.
STATUS_RETRY_DELAYS = (1, 2, 5, 15, 30, 60, 120)


# --- the adapter -------------------------------------------------------------------------------------------
class CacheKeyCache:
    """The adapters' `KeyCache` on the shared Django cache (Redis); without Redis keys are fetched again."""

    def get(self, key: str) -> Any:
        try:
            return cache.get(KEY_CACHE_PREFIX + key)
        except (RedisError, OSError):
            logger.warning("channel key cache unavailable: fetching again")
            return None

    def set(self, key: str, value: Any, timeout: int) -> None:
        try:
            cache.set(KEY_CACHE_PREFIX + key, value, timeout)
        except (RedisError, OSError):
            logger.warning("channel key cache unavailable: not stored")


def channel_adapter(connection: Connection) -> ChannelAdapter:
    """The platform adapter of a channel's account: its settings and credentials, the guarded session of
    the connection (SSRF guard, trust, breaker, quota) and the shared key cache. Call in tenant context."""
    connector_type = connector_class(connection.kind)
    if not issubclass(connector_type, MessagingConnector):
        raise InvalidConfig(f"{connection.kind} is not a messaging platform")
    connector = connector_type(
        connection.connector_config(), session=connection_session(connection), key_cache=CacheKeyCache()
    )
    return connector.adapter


def throttle_wait(*, scope: str, config: BucketConfig) -> float:
    """Seconds before the next request of `scope` may pass (0.0: go on). Fails open without Redis: a
    platform message is worth more than the limit, and the body is bounded and verified before any write."""
    try:
        return TokenBucket(f"channel-hooks:{scope}", config=config).acquire()
    except (RedisError, OSError):
        logger.warning("channel webhook rate limit skipped: Redis is unavailable")
        return 0.0


# --- accepting a verified webhook --------------------------------------------------------------------------
@dataclass(frozen=True)
class Accepted:
    new: int = 0
    duplicates: int = 0
    statuses: int = 0
    ignored: int = 0


def _payload(inbound: Inbound) -> str:
    data = dataclasses.asdict(inbound)
    data["sent_at"] = inbound.sent_at.isoformat() if inbound.sent_at else None
    data["reply_ref"] = dict(inbound.reply_ref)
    return json.dumps(data, ensure_ascii=False)


def inbound_of(payload: str) -> Inbound:
    """The `Inbound` an event's payload holds (its JSON, as `channel_events_accept` stored it)."""
    data = json.loads(payload)
    sent_at = datetime.fromisoformat(data["sent_at"]) if data.get("sent_at") else None
    return Inbound(**{**data, "sent_at": sent_at, "reply_ref": dict(data.get("reply_ref") or {})})


def channel_events_accept(*, endpoint: ChannelEndpoint, events: WebhookEvents) -> Accepted:
    """Store each new message as a queued InboundEvent (its task published on commit), skip the platform's
    redeliveries, record status reports. Call inside the endpoint's tenant context."""
    channel, kind = endpoint.channel, endpoint.channel.kind
    alias = current_tenant().db_alias
    new = duplicates = 0
    for inbound in events.messages:
        try:
            with transaction.atomic(using=alias):
                event = InboundEvent.objects.create(
                    tenant_id=channel.tenant_id,
                    channel_id=channel.id,
                    channel_kind=kind,
                    platform_message_id=inbound.platform_message_id[:255],
                    payload=_payload(inbound),
                )
                task_enqueue_on_commit(
                    _task(), kwargs={"tenant_id": channel.tenant_id, "event_id": str(event.pk)}, using=alias
                )
        except IntegrityError:
            duplicates += 1
            metrics.record_channel_message(kind=kind, direction="in", outcome="duplicate")
            continue
        new += 1
        metrics.record_channel_message(kind=kind, direction="in", outcome="accepted")
    for reason in events.ignored:
        logger.info("channel %s: webhook part ignored (%s)", channel.id, reason)
        metrics.record_channel_message(kind=kind, direction="in", outcome="ignored")
    recorded = 0
    for status in events.statuses:
        outcome = _status_record(endpoint.connection, status)
        recorded += outcome == "recorded"
        if outcome == "unknown":
            _status_later(endpoint.connection, status, attempt=0)
    return Accepted(new=new, duplicates=duplicates, statuses=recorded, ignored=len(events.ignored))


def _status_record(connection: Connection, status: StatusUpdate) -> str:
    """Note the platform's delivery status on the outbox message that sent it, under payload["delivery"]:
    queryable per account (`payload__delivery__status`) for the console's delivery report. Returns
    "recorded", "stale" (a later status is there already) or "unknown": no message of the account has that
    platform id yet (the report raced the outbox's commit of the send, or it is not ours)."""
    message = (
        OutboxMessage.objects.filter(
            connection=connection, stream=MESSAGES, vendor_id=status.platform_message_id
        )
        .only("pk", "payload")
        .first()
    )
    if message is None:
        return "unknown"
    before = (message.payload or {}).get("delivery") or {}
    new_rank = STATUS_RANK.get(status.status, 9 if status.status in ("failed", "undelivered") else 0)
    if before and STATUS_RANK.get(str(before.get("status")), 9) > new_rank:
        return "stale"
    delivery = {"status": status.status[:32], "at": timezone.now().isoformat()}
    if status.error:
        delivery["error"] = status.error[:500]
    OutboxMessage.objects.filter(pk=message.pk).update(
        payload={**(message.payload or {}), "delivery": delivery}, updated_at=timezone.now()
    )
    metrics.record_channel_message(kind=connection.kind, direction="out", outcome="status")
    return "recorded"


def _status_later(connection: Connection, status: StatusUpdate, *, attempt: int) -> None:
    """Try `status` again after the next delay of STATUS_RETRY_DELAYS; past the last, count it unmatched.

    A Celery task rather than a stored row: a status report is worth a few tries, not a table; a broker
    outage loses it (logged). The task carries the platform's message id and status, no personal data.
    """
    if attempt >= len(STATUS_RETRY_DELAYS):
        logger.info("channel account %s: a delivery status matched no sent message; dropped", connection.pk)
        metrics.record_channel_message(kind=connection.kind, direction="out", outcome="status_unmatched")
        return
    kwargs = {
        "tenant_id": connection.tenant_id,
        "connection_id": str(connection.pk),
        "platform_message_id": status.platform_message_id[:255],
        "status": status.status[:32],
        "error": status.error[:500],
        "attempt": attempt + 1,
    }
    try:
        current_app.tasks[CHANNEL_STATUS_TASK].apply_async(
            kwargs=kwargs, countdown=STATUS_RETRY_DELAYS[attempt]
        )
    except BROKER_ERRORS as exc:
        logger.warning("delivery status not kept, the broker is unavailable: %s", type(exc).__name__)


def channel_status_apply(*, connection_id: Any, status: StatusUpdate, attempt: int) -> str:
    """Record a status report that found no sent message before (see `_status_later`); call in tenant
    context. Returns the outcome: recorded, stale, unknown (tried again later), or gone (no account)."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return "gone"
    outcome = _status_record(connection, status)
    if outcome == "unknown":
        _status_later(connection, status, attempt=attempt)
    return outcome


def _task() -> Any:
    """The task by name: services never import tasks.py (tasks call services), like integrations' dispatch."""
    return current_app.tasks[CHANNEL_INBOUND_TASK]


# --- the worker: one event, one turn, one reply ------------------------------------------------------------
class Retry(Exception):
    """A transient failure: the task tries the event again after `countdown` seconds."""

    def __init__(self, message: str, *, countdown: float) -> None:
        super().__init__(message)
        self.countdown = countdown


def _platform_email(connection: Connection, inbound: Inbound) -> str:
    """The e-mail the platform's directory vouches for (Slack/Teams, `ChannelAdapter.user_email`), "" when
    none. Kept per account and user in the shared cache (encrypted: it is personal data) for
    PLATFORM_EMAIL_TTL seconds, an empty answer for PLATFORM_EMAIL_MISS_TTL. A failure (platform down, breaker
    open, Redis) means no e-mail for this conversation, never a failed turn; it is not cached, so the user's
    next conversation asks again (a permanent refusal, such as a missing scope, is kept as "none")."""
    if not inbound.sender_verified or connection.kind not in PLATFORM_USER_KINDS:
        return ""
    digest = hashlib.sha256(f"{connection.pk}|{inbound.sender}".encode()).hexdigest()
    key, aad = f"chat:platform-email:{digest}", f"platform-email|{connection.pk}|{inbound.sender}".encode()
    try:
        cached = cache.get(key)
        if isinstance(cached, str):
            return crypto.decrypt(cached, aad=aad) if cached else ""
    except (RedisError, OSError, crypto.DecryptionFailed):
        pass
    try:
        email = normalize_email(
            channel_adapter(connection).user_email(sender=inbound.sender, reply_ref=inbound.reply_ref)
        )
    except Exception as exc:  # the turn goes on without an e-mail, whatever the lookup ran into
        logger.info("channel account %s: no e-mail for the sender (%s)", connection.pk, type(exc).__name__)
        metrics.record_channel_message(kind=connection.kind, direction="in", outcome="email_unavailable")
        if isinstance(exc, ConnectorError) and exc.permanent:  # e.g. a missing scope: do not ask every time
            with contextlib.suppress(RedisError, OSError):
                cache.set(key, "", PLATFORM_EMAIL_MISS_TTL)
        return ""
    with contextlib.suppress(RedisError, OSError):
        stored = crypto.encrypt(email, aad=aad) if email else ""
        cache.set(key, stored, PLATFORM_EMAIL_TTL if email else PLATFORM_EMAIL_MISS_TTL)
    return email


def _conversation(
    principal: ChannelPrincipal, channel: Channel, inbound: Inbound, connection: Connection
) -> Conversation:
    """The open or handed-off conversation of the platform's conversation key, or a new one.

    An advisory lock per key makes two concurrent first messages of one user find one conversation; a
    user's later messages find it with one SELECT, without the lock's transaction.
    """
    tenant = principal.tenant
    key_hash = user_ref_hash(tenant_id=tenant.id, user_ref=f"{channel.kind}:{inbound.conversation_key}")
    held = Message.objects.filter(conversation=OuterRef("pk"), undelivered_at__isnull=False)
    active = (
        Conversation.objects.filter(
            channel_id=channel.id,
            platform_key_hash=key_hash,
            status__in=[ConversationStatus.OPEN, ConversationStatus.HANDOFF],
        )
        .annotate(has_held=Exists(held))  # later messages waiting for the customer to write (no extra query)
        .order_by("-created_at")
    )
    found = active.first()
    if found is not None:
        return found
    email = _platform_email(connection, inbound)  # before the transaction: a platform call, not a lock holder
    with transaction.atomic(using=tenant.db_alias):
        sql.advisory_xact_lock(
            using=tenant.db_alias,
            key=sql.lock_key("chat-platform-conversation", tenant.id, channel.id, key_hash),
        )
        found = active.first()
        if found is not None:
            return found
        conversation = conversation_start(
            principal=principal, user_ref=inbound.sender, locale=inbound.locale or None
        )
        conversation.platform_key_hash = key_hash
        conversation.reply_ref = json.dumps(dict(inbound.reply_ref))
        fields = ["platform_key_hash", "reply_ref", "updated_at"]
        identity = platform_identity(channel_kind=channel.kind, sender=inbound.sender, email=email)
        if inbound.sender_verified and identity is not None:
            # The platform vouches for the sender (a WhatsApp/SMS number, a Slack/Teams user): the same
            # identity the chat API's proofs give, so the action rules (services/identity.py) apply alike.
            conversation.identity_verified = True
            conversation.verified_identity = identity.as_json()
            fields += ["identity_verified", "verified_identity"]
        conversation.save(update_fields=fields)
        return conversation


def _finish(
    event: InboundEvent, *, status: str, error: str = "", conversation: Any = None, only_queued: bool = False
) -> int:
    """Record the event's outcome; with `only_queued`, only while it is still queued. Returns rows changed."""
    rows = InboundEvent.objects.filter(pk=event.pk)
    if only_queued:
        rows = rows.filter(status=InboundStatus.QUEUED)
    return rows.update(
        status=status,
        last_error=error[:1000],
        conversation_id=conversation.pk if conversation is not None else event.conversation_id,
        processed_at=timezone.now(),
        updated_at=timezone.now(),
    )


def _handed_off_record(principal: ChannelPrincipal, conversation: Conversation, text: str, key: str) -> None:
    """Keep the user's message of a handed-off conversation and append it to the agents' ticket (through
    the outbox, services/handoff.py); the bot says nothing. A redelivered event finds its message by key."""
    stored = redact_for_storage(tenant=principal.tenant, text=text)
    handoff_customer_message(conversation=conversation, stored_text=stored, idempotency_key=key)


def channel_inbound_process(*, event_id: Any) -> str:
    """Run one queued platform message as a turn and enqueue its reply; return the event's new status.

    Idempotent: an event no longer queued is skipped; a turn already stored is replayed by its idempotency
    key; the reply's outbox messages commit with the event's "done", under a row lock, so a redelivered task
    never enqueues a reply twice. Transient failures raise `Retry`; after MAX_ATTEMPTS the event fails.
    Call inside the event's tenant context (the task does).
    """
    tenant = current_tenant()
    event = InboundEvent.objects.filter(pk=event_id).first()
    if event is None or event.status != InboundStatus.QUEUED:
        return "skipped"
    kind = event.channel_kind
    InboundEvent.objects.filter(pk=event.pk).update(attempts=event.attempts + 1, updated_at=timezone.now())
    # The tenant row comes with the channel (one query): its locales label the turn's metrics.
    channel = (
        Channel.objects.select_related("tenant").filter(pk=event.channel_id, tenant_id=tenant.id).first()
    )
    if channel is None or not channel.enabled or channel.kind not in PLATFORM_KINDS:
        _finish(event, status=InboundStatus.IGNORED, error="The channel was deleted or disabled.")
        metrics.record_channel_message(kind=kind, direction="in", outcome="ignored")
        return InboundStatus.IGNORED
    connection = (
        Connection.objects.filter(pk=channel.platform_connection_id, kind=channel.kind).first()
        if channel.platform_connection_id
        else None
    )
    if connection is None:
        _finish(event, status=InboundStatus.FAILED, error="The channel has no platform account.")
        metrics.record_channel_message(kind=kind, direction="in", outcome="failed")
        return InboundStatus.FAILED
    inbound = inbound_of(str(event.payload or "{}"))
    principal = channel_principal(channel, as_ref(tenant), locales=tenant_locales(channel.tenant))
    key = f"{kind}:{inbound.platform_message_id}"[:128]
    try:
        conversation = _conversation(principal, channel, inbound, connection)
        if conversation.status == ConversationStatus.HANDOFF:
            _handed_off_record(principal, conversation, inbound.text, key)
            if getattr(conversation, "has_held", False):
                with transaction.atomic(using=tenant.db_alias):
                    delivery.conversation_held_resend(conversation=conversation)
            _finish(event, status=InboundStatus.DONE, conversation=conversation)
            metrics.record_channel_message(kind=kind, direction="in", outcome="handoff_quiet")
            return InboundStatus.DONE
        try:
            turn = message_post(
                principal=principal, conversation=conversation, text=inbound.text, idempotency_key=key
            )
        except ChatInputError as exc:
            _finish(event, status=InboundStatus.IGNORED, error=str(exc))
            metrics.record_channel_message(kind=kind, direction="in", outcome="ignored")
            return InboundStatus.IGNORED
        parts = reply_parts(turn.reply, max_text(connection))
        with transaction.atomic(using=tenant.db_alias):
            # "done" first: the UPDATE locks the row until the commit, and finds nothing when a concurrent
            # delivery of this task finished it (then nothing is enqueued: the transaction is empty).
            if not _finish(event, status=InboundStatus.DONE, conversation=conversation, only_queued=True):
                return "skipped"
            if getattr(conversation, "has_held", False):
                delivery.conversation_held_resend(conversation=conversation)
            reply_ref = dict(inbound.reply_ref)
            for part in parts:
                outbox_enqueue(
                    connection=connection,
                    stream=MESSAGES,
                    payload={"reply_ref": reply_ref, "text": part},
                    ordering_key=str(conversation.pk),
                )
    except Exception as exc:
        return _failed(event, kind=kind, exc=exc)
    for _part in parts:
        metrics.record_channel_message(kind=kind, direction="out", outcome="enqueued")
    metrics.record_channel_message(kind=kind, direction="in", outcome="answered")
    metrics.observe_channel_reply(
        kind=kind, seconds=max(0.0, (timezone.now() - event.created_at).total_seconds())
    )
    return InboundStatus.DONE


def _failed(event: InboundEvent, *, kind: str, exc: Exception) -> str:
    """Record the error; ask for a retry while tries remain (raise Retry), else mark the event failed."""
    attempts = event.attempts + 1
    error = f"{type(exc).__name__}: {exc}"[:1000]
    logger.warning("channel message %s failed (try %d): %s", event.pk, attempts, type(exc).__name__)
    if attempts < MAX_ATTEMPTS:
        InboundEvent.objects.filter(pk=event.pk).update(last_error=error, updated_at=timezone.now())
        delay = jittered_backoff(retries=attempts - 1, base_ms=RETRY_BASE_MS, cap_seconds=RETRY_CAP_SECONDS)
        raise Retry(error, countdown=delay) from exc
    _finish(event, status=InboundStatus.FAILED, error=error)
    metrics.record_channel_message(kind=kind, direction="in", outcome="failed")
    return InboundStatus.FAILED


# --- the sweep ---------------------------------------------------------------------------------------------
def channel_inbound_requeue_stale(*, now: datetime | None = None) -> int:
    """Publish again every event still queued REQUEUE_AFTER_SECONDS after its last change; return how many.

    Its task was lost (broker down at publish, web process died after the commit) or waits in a backlog;
    a second task finds the event done and skips it. A compare-and-set on `updated_at` keeps two sweeps
    from publishing one event twice per interval.
    """
    from apps.tenants.models import Tenant

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=REQUEUE_AFTER_SECONDS)
    tenants = {t.id: t for t in Tenant.objects.select_related("home_region").filter(is_active=True)}
    queued = 0
    for alias in {t.home_region.db_alias for t in tenants.values()}:
        stale = (
            InboundEvent.all_tenants.using(alias)
            .filter(status=InboundStatus.QUEUED, updated_at__lt=cutoff, tenant_id__in=list(tenants))
            .values_list("pk", "tenant_id", "updated_at")[:1000]
        )
        for pk, tenant_id, updated_at in stale:
            won = (
                InboundEvent.all_tenants.using(alias)
                .filter(pk=pk, status=InboundStatus.QUEUED, updated_at=updated_at)
                .update(updated_at=now)
            )
            if won and task_enqueue(_task(), kwargs={"tenant_id": tenant_id, "event_id": str(pk)}):
                queued += 1
    if queued:
        logger.info("channel messages queued again: %d", queued)
    return queued


__all__ = [
    "Accepted",
    "CacheKeyCache",
    "Retry",
    "channel_adapter",
    "channel_events_accept",
    "channel_inbound_process",
    "channel_inbound_requeue_stale",
    "channel_status_apply",
    "inbound_of",
    "reply_parts",
    "split_text",
    "throttle_wait",
]
