"""Transactional outbox: writes the hub owes a vendor, delivered at least once, in effect exactly once.

A conversation captures a lead (or opens a ticket) and records the intent to write it to the CRM in the
same database transaction (`outbox_enqueue`). Nothing lives only in the broker: after the commit a task
is kicked to deliver the message at once, and a beat task (`outbox_relay_due`) picks up whatever is due
after a crash, a worker restart or a vendor outage.

Delivery upserts by the hub's own external id (`hub-<uuid>`), so a retry after a crash between "the vendor
accepted" and "we marked it delivered" updates the same vendor record instead of creating a second one.
Messages with the same ordering key (the target record) are delivered strictly in sequence: the relay only
claims a message whose predecessors are all delivered (or discarded), with `FOR UPDATE SKIP LOCKED` so
concurrent relays never claim the same row. A claim is a lease (`HUB_OUTBOX_LEASE_SECONDS`): a relay that
dies mid-delivery leaves the message to be claimed again when the lease runs out. Each try writes one
attempt row. Transient errors back off with full jitter (honouring Retry-After and the breaker's probe
time); permanent errors and used-up retries move the message to the dead letters.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core import sql
from apps.core.context import current_tenant, tenant_context
from apps.integrations.conf import build_connector, connector_class
from apps.integrations.models import (
    ERROR_LIMIT,
    Connection,
    DeadLetter,
    DeadLetterStatus,
    OutboxAttempt,
    OutboxMessage,
    OutboxStatus,
)
from apps.integrations.resilience import BreakerOpen, breaker_for, connection_session, penalize_rate_limited
from apps.integrations.retry import failure_of, outbox_retry_delay
from apps.integrations.services.deadletters import deadletter_outbox
from apps.integrations.services.dispatch import outbox_kick
from apps.integrations.services.sync import with_phone_digits
from apps.integrations.signals import outbox_settled
from apps.policies.registry import Subject
from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.http import HttpSession, redact

logger = logging.getLogger(__name__)

#: Statuses after which a message no longer holds back its successors.
SETTLED = (OutboxStatus.DELIVERED, OutboxStatus.DISCARDED)
#: Statuses the relay may claim (a "delivering" one only once its lease ran out).
CLAIMABLE = (OutboxStatus.PENDING, OutboxStatus.DELIVERING)
#: How long one relay task keeps draining a connection before it yields the worker.
RELAY_BUDGET_SECONDS = 20.0


# --- enqueue -----------------------------------------------------------------------------------------------
def _key_lock(*, using: str, tenant_id: int, connection_id: Any, ordering_key: str) -> None:
    """Serialize enqueuers of one ordering key until their transaction ends.

    The sequence is then handed out in commit order: a message can never become visible after a later
    message for the same target, which would let the relay deliver them the wrong way round.
    """
    sql.advisory_xact_lock(using=using, key=sql.lock_key("outbox", tenant_id, connection_id, ordering_key))


def outbox_enqueue(
    *,
    connection: Connection,
    stream: str,
    payload: dict[str, Any],
    ordering_key: str,
    external_id: str | None = None,
    operation: str = "upsert",
) -> OutboxMessage:
    """Record the intent to upsert `payload` (canonical fields) into `stream` of the connection's vendor.

    Must be called inside the caller's transaction on the tenant's region database, next to the business
    change it belongs to: both commit or neither does (it refuses to run in autocommit). The delivery is
    kicked once the transaction commits. Messages of one `ordering_key` (the target record) are delivered
    in the order they were committed and share one hub external id (the first message's, unless given),
    so later messages update the record the first one created.
    """
    tenant = current_tenant()
    using = tenant.db_alias
    if not transaction.get_connection(using).in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction of the change it belongs to")
    # Refuse unknown or read-only streams now, not at delivery time (no network: config parsing only).
    connector_class(connection.kind)(connection.connector_config(), session=HttpSession()).stream(
        stream, for_write=True
    )
    _key_lock(using=using, tenant_id=tenant.id, connection_id=connection.pk, ordering_key=ordering_key)
    last = (
        OutboxMessage.objects.filter(connection=connection, ordering_key=ordering_key)
        .order_by("-sequence")
        .values_list("sequence", "external_id")
        .first()
    )
    sequence = last[0] + 1 if last else 1
    external_id = external_id or (last[1] if last else f"hub-{uuid.uuid4()}")
    message = OutboxMessage.objects.create(
        connection=connection,
        stream=stream,
        operation=operation,
        external_id=external_id,
        payload=payload,
        ordering_key=ordering_key,
        sequence=sequence,
        next_attempt_at=timezone.now(),
    )
    outbox_kick(message=message)
    return message


# --- claiming ---------------------------------------------------------------------------------------------
def _heads(queryset: QuerySet[OutboxMessage], manager: Any) -> QuerySet[OutboxMessage]:
    """Narrow `queryset` to messages none of whose predecessors (same target) is still unsettled."""
    unsettled_predecessor = manager.filter(
        tenant_id=OuterRef("tenant_id"),
        connection_id=OuterRef("connection_id"),
        ordering_key=OuterRef("ordering_key"),
        sequence__lt=OuterRef("sequence"),
    ).exclude(status__in=SETTLED)
    return queryset.exclude(Exists(unsettled_predecessor))


@dataclass(slots=True)
class Claimed:
    message: OutboxMessage
    attempt: OutboxAttempt


def _claim(*, connection: Connection, limit: int, message_id: int | None = None) -> list[Claimed]:
    """Claim up to `limit` due head messages of one connection (a lease), with an attempt row each.

    Locked rows are skipped, so concurrent relays split the work instead of waiting for each other.
    """
    tenant = current_tenant()
    using = tenant.db_alias
    now = timezone.now()
    with transaction.atomic(using=using):
        due = OutboxMessage.objects.filter(
            connection=connection, status__in=CLAIMABLE, next_attempt_at__lte=now
        )
        if message_id is not None:
            due = due.filter(pk=message_id)
        messages = list(
            _heads(due, OutboxMessage.all_tenants)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_attempt_at", "id")[:limit]
        )
        if not messages:
            return []
        ids = [m.pk for m in messages]
        lease = now + timedelta(seconds=settings.HUB_OUTBOX_LEASE_SECONDS)
        OutboxMessage.objects.filter(pk__in=ids).update(
            status=OutboxStatus.DELIVERING, attempts=F("attempts") + 1, next_attempt_at=lease, updated_at=now
        )
        numbers = dict(
            OutboxAttempt.objects.filter(message_id__in=ids)
            .values("message_id")
            .annotate(last=Max("number"))
            .values_list("message_id", "last")
        )
        attempts = OutboxAttempt.objects.bulk_create(
            [
                OutboxAttempt(tenant_id=tenant.id, message=m, number=numbers.get(m.pk, 0) + 1, started_at=now)
                for m in messages
            ]
        )
    claimed = []
    for message, attempt in zip(messages, attempts, strict=True):
        message.status, message.attempts, message.next_attempt_at = (
            OutboxStatus.DELIVERING,
            message.attempts + 1,
            lease,
        )
        claimed.append(Claimed(message, attempt))
    return claimed


# --- outcomes ---------------------------------------------------------------------------------------------
def _finish_attempt(attempt: OutboxAttempt, *, error: str = "", retry_after: float | None = None) -> None:
    attempt.error, attempt.retry_after, attempt.finished_at = error[:ERROR_LIMIT], retry_after, timezone.now()
    attempt.save(update_fields=["error", "retry_after", "finished_at", "updated_at"])


def _mine(claimed: Claimed) -> QuerySet[OutboxMessage]:
    """The message, if this claim still holds it (a relay whose lease ran out must not overwrite)."""
    message = claimed.message
    return OutboxMessage.objects.filter(
        pk=message.pk, status=OutboxStatus.DELIVERING, attempts=message.attempts
    )


def _delivered(claimed: Claimed, *, vendor_id: str | None) -> None:
    now = timezone.now()
    with transaction.atomic(using=current_tenant().db_alias):
        _finish_attempt(claimed.attempt)
        won = _mine(claimed).update(
            status=OutboxStatus.DELIVERED,
            delivered_at=now,
            vendor_id=vendor_id or "",
            last_error="",
            updated_at=now,
        )
        if won:
            claimed.message.vendor_id = vendor_id or ""
            _settled_on_commit(claimed.message, status=OutboxStatus.DELIVERED)


def _failed(claimed: Claimed, *, error: str, transient: bool, retry_after: float | None) -> str:
    """Record a failed try; schedule the next one, or dead-letter the message. Return its new status."""
    message = claimed.message
    with transaction.atomic(using=current_tenant().db_alias):
        _finish_attempt(claimed.attempt, error=error, retry_after=retry_after)
        if transient and message.attempts < settings.HUB_OUTBOX_MAX_ATTEMPTS:
            delay = outbox_retry_delay(attempts=message.attempts, retry_after=retry_after)
            now = timezone.now()
            _mine(claimed).update(
                status=OutboxStatus.PENDING,
                next_attempt_at=now + timedelta(seconds=delay),
                last_error=error[:ERROR_LIMIT],
                updated_at=now,
            )
            return OutboxStatus.PENDING
        if not _mine(claimed).exists():
            return OutboxStatus.DELIVERING  # another relay took over after our lease ran out
        if transient:
            error = f"Retries exhausted after {message.attempts} attempts. Last error: {error}"
        deadletter_outbox(message=message, error=error)
        _settled_on_commit(message, status=OutboxStatus.DEAD)
        return OutboxStatus.DEAD


def _settled_on_commit(message: OutboxMessage, *, status: str) -> None:
    """Tell the layers above (integrations/signals.py) once the outcome is committed; a receiver's failure
    is logged, never the relay's."""

    def send() -> None:
        for receiver, result in outbox_settled.send_robust(
            sender=OutboxMessage, message=message, status=status
        ):
            if isinstance(result, Exception):
                logger.warning("outbox_settled receiver %s failed: %s", receiver, type(result).__name__)

    transaction.on_commit(send, using=current_tenant().db_alias)


# --- delivery ---------------------------------------------------------------------------------------------
def _breaker_open(connection: Connection) -> bool:
    """Tell whether the connection's breaker is open and not yet due for a probe (read-only check).

    Checked before claiming, so a long outage costs one probe per cool-down, not one try per message.
    """
    state = breaker_for(connection).state()
    return state.state == "open" and state.retry_at is not None and state.retry_at > timezone.now()


class _Courier:
    """Delivers claimed messages of one connection; its connector (one vendor login) serves every batch.

    Every request passes the connection's token bucket and circuit breaker, shared by all workers.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.secrets = list(connection.secrets.values())
        self._connector: Connector | None = None

    def _get_connector(self) -> Connector:
        if self._connector is None:
            self._connector = build_connector(self.connection, session=connection_session(self.connection))
        return self._connector

    def deliver(self, claimed: list[Claimed]) -> tuple[int, bool]:
        """Write the claimed messages, one call per stream; return (delivered, whether the vendor fails)."""
        try:
            connector = self._get_connector()
        except ConnectorError as exc:  # settings that no longer parse: nothing can be delivered
            for item in claimed:
                _failed(item, error=redact(exc.message, self.secrets), transient=False, retry_after=None)
            return 0, False
        by_stream: dict[str, list[Claimed]] = defaultdict(list)
        for item in claimed:
            by_stream[item.message.stream].append(item)
        delivered, failing = 0, False
        for stream, items in by_stream.items():
            count, transient_failure = self._write(connector, stream, items)
            delivered += count
            failing = failing or transient_failure
        return delivered, failing

    def _write(self, connector: Connector, stream: str, items: list[Claimed]) -> tuple[int, bool]:
        records = [{"external_id": c.message.external_id, "fields": c.message.payload} for c in items]
        try:
            result = connector.write(stream, records)
        except (ConnectorError, BreakerOpen, RedisError) as exc:
            # Redis away is transient too: a retry upserts by external id, never a second vendor row.
            failure = failure_of(exc, secrets=self.secrets)
            penalize_rate_limited(exc, connection=self.connection)
            for item in items:
                _failed(
                    item, error=failure.message, transient=failure.transient, retry_after=failure.retry_after
                )
            return 0, failure.transient
        outcomes = {o.external_id: o for o in result.outcomes}
        delivered = 0
        for item in items:
            outcome = outcomes.get(item.message.external_id)
            if outcome is None:
                _failed(item, error="The vendor's answer did not cover this record.", transient=True,
                        retry_after=None)  # fmt: skip
            elif outcome.error is not None:
                # The vendor rejected this record (validation, a missing required field): permanent.
                error = redact(outcome.error, self.secrets)
                _failed(item, error=error, transient=False, retry_after=None)
            else:
                _delivered(item, vendor_id=outcome.vendor_id)
                delivered += 1
        return delivered, False


def outbox_deliver(*, message_id: int) -> str | None:
    """Try to deliver one message now; return its status, None when it is gone.

    Does nothing when the message is not due, is already claimed, or waits for a predecessor: the relay
    delivers it in its turn.
    """
    message = OutboxMessage.objects.select_related("connection").filter(pk=message_id).first()
    if message is None:
        return None
    connection = message.connection
    if message.status in CLAIMABLE and connection.enabled and not _breaker_open(connection):
        claimed = _claim(connection=connection, limit=1, message_id=message_id)
        if claimed:
            _Courier(connection).deliver(claimed)
    return OutboxMessage.objects.filter(pk=message_id).values_list("status", flat=True).first()


def outbox_relay(
    *, connection_id: Any, limit: int | None = None, budget_s: float = RELAY_BUDGET_SECONDS
) -> int:
    """Deliver one connection's due messages in batches; return how many were delivered.

    Stops when nothing is due, the vendor is failing (the next beat tick tries again, after the backoff),
    or the time budget is spent, so one busy connection never holds a worker for long.
    """
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None or not connection.enabled:
        return 0  # a disabled connection keeps its messages until it is enabled again
    limit = limit or settings.HUB_OUTBOX_BATCH
    courier = _Courier(connection)
    deadline = time.monotonic() + budget_s
    delivered = 0
    while time.monotonic() < deadline and not _breaker_open(connection):
        claimed = _claim(connection=connection, limit=limit)
        if not claimed:
            break
        count, failing = courier.deliver(claimed)
        delivered += count
        if failing:
            break
    return delivered


def outbox_due(*, now: datetime | None = None) -> list[tuple[int, Any]]:
    """(tenant id, connection id) of every connection with deliverable messages, in every region."""
    from apps.tenants.models import Tenant

    now = now or timezone.now()
    tenants = Tenant.objects.select_related("home_region").filter(is_active=True)
    ids = [t.id for t in tenants]
    found: list[tuple[int, Any]] = []
    for alias in {t.home_region.db_alias for t in tenants}:
        manager = OutboxMessage.all_tenants.db_manager(alias)
        due = manager.filter(
            status__in=CLAIMABLE, next_attempt_at__lte=now, connection__enabled=True, tenant_id__in=ids
        )
        found.extend(_heads(due, manager).order_by().values_list("tenant_id", "connection_id").distinct())
    return found


# --- erasure (registered in IntegrationsConfig.ready) ---------------------------------------------------
ERASED_ERROR = "The payload was erased on request of the data subject."


def erase_outbox(*, tenant: Any, subject: Subject) -> int:
    """Blank the outbox payloads (and their dead-letter copies) that carry the subject's e-mail or phone.

    Undelivered messages are discarded rather than delivered empty; the vendor may already hold the
    person from earlier deliveries, so erase there too.
    """
    if not (subject.email or subject.phone):
        return 0
    total = 0
    with tenant_context(tenant), transaction.atomic(using=current_tenant().db_alias):
        messages = OutboxMessage.objects.all()
        query = Q()
        if subject.email:
            query |= Q(payload__email__iexact=subject.email)
        if subject.phone:
            messages, phone_query = with_phone_digits(messages, "payload", subject.phone)
            query |= phone_query
        matching = messages.filter(query).select_for_update()
        ids = list(matching.values_list("pk", flat=True))
        now = timezone.now()
        OutboxMessage.objects.filter(pk__in=ids).exclude(status=OutboxStatus.DELIVERED).update(
            status=OutboxStatus.DISCARDED, last_error=ERASED_ERROR, updated_at=now
        )
        total += OutboxMessage.objects.filter(pk__in=ids).update(payload={}, updated_at=now)
        letters = DeadLetter.objects.filter(message_id__in=ids)
        if subject.email:  # letters of writes that never became a message row (sync runs carry none)
            letters = letters | DeadLetter.objects.filter(payload__email__iexact=subject.email)
        letters.filter(status=DeadLetterStatus.OPEN).update(
            status=DeadLetterStatus.DISCARDED, resolved_at=now, updated_at=now
        )
        total += letters.update(payload={}, updated_at=now)
    return total


# --- retention (registered in IntegrationsConfig.ready) ---------------------------------------------------
def purge_delivered_writes(*, tenant: Any, cutoff: datetime, batch_size: int) -> int:
    """Remove writes settled (delivered or discarded) before `cutoff`: their payloads hold personal data.

    The newest message of each target record keeps its row with the payload blanked, because later
    writes to that record reuse its hub external id (outbox_enqueue) — deleting it would make the vendor
    create a second record. Older settled messages are deleted with their attempts and resolved dead
    letters; a message whose dead letter is still open waits for the operator. Returns rows deleted plus
    payloads blanked.
    """
    later = OutboxMessage.objects.filter(
        tenant_id=OuterRef("tenant_id"),
        connection_id=OuterRef("connection_id"),
        ordering_key=OuterRef("ordering_key"),
        sequence__gt=OuterRef("sequence"),
    )
    open_letter = DeadLetter.objects.filter(message_id=OuterRef("pk"), status=DeadLetterStatus.OPEN)
    with tenant_context(tenant):
        settled = OutboxMessage.objects.filter(status__in=SETTLED, updated_at__lt=cutoff).exclude(
            Exists(open_letter)
        )
        total = 0
        superseded = settled.filter(Exists(later))
        while pks := list(superseded.values_list("pk", flat=True)[:batch_size]):
            OutboxMessage.objects.filter(pk__in=pks).delete()
            total += len(pks)
        newest = settled.exclude(Exists(later)).exclude(payload={})
        while pks := list(newest.values_list("pk", flat=True)[:batch_size]):
            # updated_at stays: blanking is not a change the next run should see as recent.
            total += OutboxMessage.objects.filter(pk__in=pks).update(payload={})
            DeadLetter.objects.filter(message_id__in=pks).update(payload={})
    return total
