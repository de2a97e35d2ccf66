"""The sync engine: read a stream from its connector and store it, exactly once in effect.

At-least-once delivery plus idempotent writes: records arrive in batches; each batch is upserted in one
statement and the cursor that covers exactly that batch is stored in the same transaction. A crash (or a
SIGKILLed worker) anywhere therefore leaves the store and the cursor consistent, and the next attempt
resumes after the last committed batch. Reads use `>=` on the cursor and skip the ids it already covers;
rows whose content hash did not change are not rewritten.

One sync per (connection, stream) runs at a time: a session-level PostgreSQL advisory lock on the region
database, released by the server when the holder's connection dies (no stale Redis lock after a crash).
"""

from __future__ import annotations

import gc
import json
import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connections, transaction
from django.db.models import CharField, Exists, Func, OuterRef, Q, QuerySet, Value
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpRequest
from django.utils import timezone
from redis.exceptions import RedisError

from apps.audit.services import audit_record
from apps.core import sql
from apps.core.context import current_tenant, tenant_context
from apps.integrations.conf import build_connector, connector_class
from apps.integrations.models import (
    ERROR_LIMIT,
    Connection,
    RunStatus,
    StreamState,
    SyncAttempt,
    SyncedRecord,
    SyncRun,
)
from apps.integrations.resilience import BreakerOpen, connection_session, penalize_rate_limited
from apps.integrations.retry import failure_of
from apps.integrations.services.dispatch import sync_stream_enqueue, sync_stream_enqueue_on_commit
from apps.observability import metrics
from apps.policies.registry import Subject
from connectors.base import Cursor, Record
from connectors.errors import ConnectorError
from connectors.http import HttpSession

logger = logging.getLogger(__name__)

BATCH_SIZE = 2_000
TIME_LIMIT_EXCEEDED = "The sync used up its time limit; the next run goes on from the stored cursor."

_TABLE = SyncedRecord._meta.db_table
# One statement per batch: the batch arrives as one JSON array (encoded in one C call, no per-value
# adaptation), PostgreSQL unpacks it, derives the queried columns and hashes the normalized jsonb text.
UPSERT_SQL = f"""
INSERT INTO {_TABLE} AS r
    (tenant_id, connection_id, stream, created_at, synced_at, external_id, updated_at, deleted,
     email, display_name, status, number, fields, raw, content_hash)
SELECT %(tenant_id)s, %(connection_id)s, %(stream)s, now(), now(),
       e->>0, to_timestamp((e->>1)::bigint), (e->>2)::boolean,
       left(lower(btrim(coalesce(e->3->>'email', ''))), 254),
       left(coalesce(e->3->>'name', e->3->>'title', e->3->>'subject',
                     concat_ws(' ', e->3->>'first_name', e->3->>'last_name')), 255),
       left(coalesce(e->3->>'status', ''), 64), left(coalesce(e->3->>'number', ''), 64),
       e->3, e->4, encode(sha256(convert_to((e->>2) || (e->>4), 'UTF8')), 'hex')
FROM jsonb_array_elements(%(batch)s::jsonb) AS e
ON CONFLICT (tenant_id, connection_id, stream, external_id) DO UPDATE SET
    updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted, email = EXCLUDED.email,
    display_name = EXCLUDED.display_name, status = EXCLUDED.status, number = EXCLUDED.number,
    fields = EXCLUDED.fields, raw = EXCLUDED.raw, content_hash = EXCLUDED.content_hash,
    synced_at = EXCLUDED.synced_at
WHERE r.content_hash IS DISTINCT FROM EXCLUDED.content_hash
RETURNING (xmax = 0)
"""  # noqa: S608 - the table name is a constant
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


class SyncFailed(Exception):
    """A transient failure the caller may retry: the run stays open and remembers the attempt."""

    def __init__(self, message: str, *, run_id: int, retry_after: float | None) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.retry_after = retry_after


@dataclass(slots=True)
class BatchCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


# --- helpers -----------------------------------------------------------------------------------------------
def lock_key(*, tenant_id: int, connection_id: Any, stream: str) -> int:
    """A signed 64-bit advisory-lock key for one (tenant, connection, stream)."""
    return sql.lock_key("sync", tenant_id, connection_id, stream)


def _text(value: Any, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def _display_name(fields: dict[str, Any]) -> str:
    for key in ("name", "title", "subject"):
        if fields.get(key):
            return _text(fields[key], 255)
    parts = [str(fields[k]) for k in ("first_name", "last_name") if fields.get(k)]
    return " ".join(parts)[:255]


def canonical_json(value: Any) -> str:
    """Key-sorted, compact JSON: equal content always gives equal text, so equal hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


@dataclass(frozen=True, slots=True)
class Prepared:
    """One batch as read, de-duplicated by external id and rendered as one JSON array."""

    records: list[Record]
    unique: int
    payload: str


def prepare_batch(records: list[Record]) -> Prepared:
    latest = {record.external_id: record for record in records}  # a statement may touch a row once
    rows = [
        (r.external_id, int(r.updated_at.timestamp()), r.deleted, r.fields, r.raw) for r in latest.values()
    ]
    return Prepared(records, len(latest), _ENCODE(rows).replace("\\u0000", ""))


def prepared_batches(records: Iterable[Record], size: int) -> Iterator[Prepared]:
    """Yield prepared batches, reading and rendering the next one in a helper thread meanwhile.

    The vendor round trips and the database round trips then overlap instead of adding up. The helper
    touches only the connector and strings (no database, no tenant context); an error it meets is raised
    here, in order, after the batches read before it.
    """
    handoff: queue.Queue[Prepared | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Prepared | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in _batches(records, size):
                if not put(prepare_batch(batch)):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    reader = threading.Thread(target=produce, name="sync-reader", daemon=True)
    reader.start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=60)


@contextmanager
def _bulk_gc() -> Iterator[None]:
    """Collect garbage less often during a bulk read.

    Every record allocates a few dozen short-lived, acyclic objects (freed by reference counting), so with
    the default thresholds the collector keeps scanning the whole Django heap for nothing; that costs
    about a third of the read throughput. Restored afterwards unless someone else changed it meanwhile.
    """
    previous = gc.get_threshold()
    relaxed = (max(previous[0], 50_000), *previous[1:])
    gc.set_threshold(*relaxed)
    try:
        yield
    finally:
        if gc.get_threshold() == relaxed:
            gc.set_threshold(*previous)


def _advance(cursor: Cursor, batch: Sequence[Record]) -> Cursor:
    """Cursor.advance over a whole batch without building a frozenset per record."""
    value, seen, token = cursor.value, set(cursor.seen_ids), cursor.token
    for record in batch:
        if value is None or record.updated_at > value:
            value, seen = record.updated_at, {record.external_id}
        elif record.updated_at == value:
            seen.add(record.external_id)
        if record.cursor_token is not None:
            token = record.cursor_token
    return Cursor(value, frozenset(seen), token)


def _later(stored: Cursor, new: Cursor) -> Cursor:
    """The cursor that covers everything both cover (for a backfill that must never move the cursor back).

    A vendor token read by the backfill wins: it resumes the backfill's own read, whose delta link then
    covers every change since the backfill began."""
    later = _later_value(stored, new)
    token = new.token if new.token is not None else stored.token
    return later if later.token == token else Cursor(later.value, later.seen_ids, token)


def _later_value(stored: Cursor, new: Cursor) -> Cursor:
    if stored.value is None or (new.value is not None and new.value > stored.value):
        return new
    if new.value == stored.value:
        return Cursor(stored.value, stored.seen_ids | new.seen_ids)
    return stored


def upsert_records(
    *, tenant_id: int, connection_id: Any, stream: str, batch: Prepared, using: str
) -> BatchCounts:
    """Bulk-upsert one batch in a single INSERT ... ON CONFLICT; unchanged content is not rewritten.

    `xmax = 0` in RETURNING tells inserted rows from updated ones; rows skipped by the WHERE return nothing.
    """
    params = {
        "tenant_id": tenant_id,
        "connection_id": connection_id,
        "stream": stream,
        "batch": batch.payload,
    }
    with connections[using].cursor() as cursor:
        cursor.execute(UPSERT_SQL, params)
        inserted = [row[0] for row in cursor.fetchall()]
    created = sum(inserted)
    return BatchCounts(
        created=created, updated=len(inserted) - created, unchanged=batch.unique - len(inserted)
    )


# --- state -------------------------------------------------------------------------------------------------
def stream_state_get(*, connection: Connection, stream: str) -> StreamState:
    """The stream's state row, created (due now) on first use."""
    state, _ = StreamState.objects.get_or_create(
        connection=connection, stream=stream, defaults={"next_run_at": timezone.now()}
    )
    return state


def _relax_commit(using: str) -> None:
    """Skip the WAL flush wait for this batch's commit.

    Safe here: records and the cursor commit together, so a server crash can only lose whole batches,
    which the next run reads again; it cannot tear a batch from its cursor.
    """
    with connections[using].cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _finish(run: SyncRun, status: str, error: str = "") -> SyncRun:
    now = timezone.now()
    run.status = status
    run.error = error[:ERROR_LIMIT]
    run.finished_at = now
    if run.started_at is not None:
        run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
    run.save(update_fields=["status", "error", "finished_at", "duration_ms", "updated_at"])
    return run


def sync_run_fail(*, run_id: int, error: str) -> SyncRun | None:
    """Close a run as failed (retries exhausted, worker lost); None when the run no longer exists."""
    run = SyncRun.objects.filter(pk=run_id).first()
    if run is None or run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED):
        return run
    return _finish(run, RunStatus.FAILED, error)


def _open_run(
    *, connection: Connection, stream: str, trigger: str, backfill: bool, run_id: int | None
) -> SyncRun:
    run = SyncRun.objects.filter(pk=run_id).first() if run_id is not None else None
    if run is None:
        run = SyncRun.objects.create(connection=connection, stream=stream, trigger=trigger, backfill=backfill)
    return run


# --- the service ---------------------------------------------------------------------------------------
def sync_stream(
    *,
    connection_id: Any,
    stream: str,
    trigger: str,
    backfill: bool = False,
    run_id: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> SyncRun | None:
    """Run one attempt of a stream sync; return the run, or None when the connection is gone.

    Permanent errors fail the run with the vendor's reason. Transient ones are recorded on the attempt and
    raised as SyncFailed (the run stays open) so the caller — the Celery task — decides when to retry.
    Call inside the tenant context.
    """
    tenant = current_tenant()
    using = tenant.db_alias
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        if run_id is not None:
            SyncRun.objects.filter(pk=run_id).delete()
        return None
    run = _open_run(connection=connection, stream=stream, trigger=trigger, backfill=backfill, run_id=run_id)
    if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED):
        return run  # a redelivered message for a run that already ended
    if not connection.enabled:
        return _finish(run, RunStatus.SKIPPED, "The connection is disabled.")
    key = lock_key(tenant_id=tenant.id, connection_id=connection.pk, stream=stream)
    if not sql.advisory_try_lock(using=using, key=key):
        if run_id is not None and run.attempts.filter(finished_at__isnull=True).exists():
            return run  # a second message of this very run (re-queued by the sweep) while it runs
        return _finish(run, RunStatus.SKIPPED, "Another sync of this stream is running.")
    try:
        run.refresh_from_db(fields=["status"])
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED):
            return run  # it ended while this message waited for the lock
        # Holding the lock, any other "running" run of this stream was orphaned by a dead worker.
        SyncRun.objects.filter(connection=connection, stream=stream, status=RunStatus.RUNNING).exclude(
            pk=run.pk
        ).update(
            status=RunStatus.FAILED,
            error="The worker running this sync was lost.",
            finished_at=timezone.now(),
        )
        return _attempt(
            connection=connection, stream=stream, run=run, backfill=backfill, batch_size=batch_size
        )
    finally:
        sql.advisory_unlock(using=using, key=key)


def _attempt(
    *, connection: Connection, stream: str, run: SyncRun, backfill: bool, batch_size: int
) -> SyncRun:
    tenant = current_tenant()
    using = tenant.db_alias
    now = timezone.now()
    number = run.attempts.count() + 1
    attempt = SyncAttempt.objects.create(run=run, number=number, started_at=now)
    if run.started_at is None:
        run.started_at = now
    run.status = RunStatus.RUNNING
    run.save(update_fields=["status", "started_at", "updated_at"])
    state = stream_state_get(connection=connection, stream=stream)
    stored = Cursor.from_json(state.cursor)
    cursor = Cursor() if backfill else stored
    secrets = list(connection.secrets.values())
    try:
        connector = build_connector(connection, session=connection_session(connection))
        with _bulk_gc():
            for batch in prepared_batches(connector.read(stream, cursor=cursor), batch_size):
                cursor = _advance(cursor, batch.records)
                with transaction.atomic(using=using):
                    _relax_commit(using)
                    counts = upsert_records(
                        tenant_id=tenant.id,
                        connection_id=connection.pk,
                        stream=stream,
                        batch=batch,
                        using=using,
                    )
                    # Backfill starts from scratch but must never move the stored cursor back.
                    stored = _later(stored, cursor) if backfill else cursor
                    StreamState.objects.filter(pk=state.pk).update(
                        cursor=stored.to_json(), updated_at=timezone.now()
                    )
                    run.read += len(batch.records)
                    run.created += counts.created
                    run.updated += counts.updated
                    run.unchanged += counts.unchanged
                    run.save(update_fields=["read", "created", "updated", "unchanged", "updated_at"])
                metrics.record_sync_records(
                    tenant=tenant.slug,
                    connector=connection.kind,
                    stream=stream,
                    created=counts.created,
                    updated=counts.updated,
                    unchanged=counts.unchanged,
                )
    except SoftTimeLimitExceeded:
        # Its batches are stored with their cursor: the next run goes on from there.
        attempt.error, attempt.finished_at = TIME_LIMIT_EXCEEDED, timezone.now()
        attempt.save(update_fields=["error", "finished_at", "updated_at"])
        return _finish(run, RunStatus.FAILED, TIME_LIMIT_EXCEEDED)
    except (ConnectorError, BreakerOpen, RedisError) as exc:
        failure = failure_of(exc, secrets=secrets)
        penalize_rate_limited(exc, connection=connection)
        attempt.error, attempt.retry_after = failure.message, failure.retry_after
        attempt.finished_at = timezone.now()
        attempt.save(update_fields=["error", "retry_after", "finished_at", "updated_at"])
        if not failure.transient:
            return _finish(run, RunStatus.FAILED, failure.message)
        SyncRun.objects.filter(pk=run.pk).update(
            status=RunStatus.QUEUED, error=failure.message, updated_at=timezone.now()
        )
        raise SyncFailed(failure.message, run_id=run.pk, retry_after=failure.retry_after) from exc
    finished = timezone.now()
    attempt.finished_at = finished
    attempt.save(update_fields=["finished_at", "updated_at"])
    StreamState.objects.filter(pk=state.pk).update(
        last_success_at=finished,
        next_run_at=finished + timedelta(seconds=state.interval_seconds),
        updated_at=finished,
    )
    return _finish(run, RunStatus.SUCCEEDED)


# --- scheduling and the console's controls ---------------------------------------------------------------
def streams_claim_due(*, now: datetime | None = None) -> list[tuple[Any, list[tuple[Any, str]]]]:
    """Claim the streams whose next run is due, in every region; return them grouped by tenant.

    Claiming moves `next_run_at` one interval ahead with a compare-and-set, so two beat ticks (or two beat
    processes by mistake) never queue the same stream twice. Paused streams, disabled connections and
    inactive tenants are left alone.
    """
    from apps.tenants.models import Tenant

    now = now or timezone.now()
    tenants = {t.id: t for t in Tenant.objects.select_related("home_region").filter(is_active=True)}
    claimed: dict[int, list[tuple[Any, str]]] = {}
    for alias in {t.home_region.db_alias for t in tenants.values()}:
        due = (
            StreamState.all_tenants.using(alias)
            .filter(next_run_at__lte=now, paused=False, connection__enabled=True, tenant_id__in=list(tenants))
            .values_list("pk", "tenant_id", "connection_id", "stream", "interval_seconds", "next_run_at")
        )
        for pk, tenant_id, connection_id, stream, interval, next_run_at in due:
            won = (
                StreamState.all_tenants.using(alias)
                .filter(pk=pk, next_run_at=next_run_at)
                .update(next_run_at=now + timedelta(seconds=interval))
            )
            if won:
                claimed.setdefault(tenant_id, []).append((connection_id, stream))
    return [(tenants[tenant_id], items) for tenant_id, items in claimed.items()]


def sync_request(
    *,
    connection: Connection,
    stream: str,
    trigger: str,
    backfill: bool = False,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> None:
    """Queue a sync of one stream once the caller's transaction commits (console, webhooks, API).

    The run is recorded as queued right away, so the console shows it before a worker picks it up. A person's
    request (actor given) is audited; webhook- and schedule-triggered runs are not (they would flood the log).
    """
    tenant = current_tenant()
    connector_class(connection.kind)(connection.connector_config(), session=HttpSession()).stream(stream)
    run = SyncRun.objects.create(connection=connection, stream=stream, trigger=trigger, backfill=backfill)
    if actor is not None:
        action = "sync.backfill_requested" if backfill else "sync.requested"
        _audit_stream(action, connection=connection, stream=stream, actor=actor, request=request)
    kwargs = {
        "tenant_id": tenant.id,
        "connection_id": str(connection.pk),
        "stream": stream,
        "trigger": trigger,
        "backfill": backfill,
        "run_id": run.pk,
    }
    # With the broker away the run stays queued in the database; sync_requeue_stale publishes it again.
    sync_stream_enqueue_on_commit(kwargs=kwargs, using=tenant.db_alias)


def sync_requeue_stale(*, now: datetime | None = None) -> int:
    """Publish again every queued run whose message must be lost; return how many.

    A run that never started within HUB_SYNC_REQUEUE_SECONDS, or one waiting for a retry for longer than the
    longest retry delay plus that: the publish failed (broker down; a failed retry publish drops the
    message), the web process died before publishing, or the broker lost its data. A run whose message merely
    waits in a backlog gets a second message; whichever comes second finds the run running or ended and does
    nothing. A re-published retry starts its retry count afresh. A compare-and-set on `updated_at` keeps two
    sweeps (or two beats) from publishing the same run twice per interval.
    """
    from apps.tenants.models import Tenant

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HUB_SYNC_REQUEUE_SECONDS)
    retry_cutoff = cutoff - timedelta(seconds=settings.HUB_SYNC_RETRY_MAX_SECONDS)
    tenants = {t.id: t for t in Tenant.objects.select_related("home_region").filter(is_active=True)}
    queued = 0
    for alias in {t.home_region.db_alias for t in tenants.values()}:
        stale = (
            SyncRun.all_tenants.using(alias)
            .filter(status=RunStatus.QUEUED, updated_at__lt=cutoff, tenant_id__in=list(tenants))
            .annotate(tried=Exists(SyncAttempt.all_tenants.filter(run_id=OuterRef("pk"))))
            .filter(Q(tried=False) | Q(updated_at__lt=retry_cutoff))
            .values_list("pk", "tenant_id", "connection_id", "stream", "trigger", "backfill", "updated_at")
        )
        for pk, tenant_id, connection_id, stream, trigger, backfill, updated_at in stale:
            won = (
                SyncRun.all_tenants.using(alias)
                .filter(pk=pk, status=RunStatus.QUEUED, updated_at=updated_at)
                .update(updated_at=now)
            )
            if not won:
                continue
            kwargs = {
                "tenant_id": tenant_id,
                "connection_id": str(connection_id),
                "stream": stream,
                "trigger": trigger,
                "backfill": backfill,
                "run_id": pk,
            }
            if not sync_stream_enqueue(kwargs=kwargs):
                # The broker is still away: give the run back to the next sweep and stop trying for now.
                SyncRun.all_tenants.using(alias).filter(pk=pk, updated_at=now).update(updated_at=updated_at)
                return queued
            queued += 1
    return queued


def _audit_stream(
    action: str,
    *,
    connection: Connection,
    stream: str,
    actor: Any,
    request: HttpRequest | None,
    **changes: Any,
) -> None:
    audit_record(
        action,
        tenant=current_tenant(),
        actor=actor,
        request=request,
        target=connection,
        changes={"stream": stream, **changes},
    )


def stream_pause(
    *, connection: Connection, stream: str, actor: Any = None, request: HttpRequest | None = None
) -> StreamState:
    """Stop scheduled syncs of a stream (a manual "sync now" still runs)."""
    with transaction.atomic(using=current_tenant().db_alias):
        state = stream_state_get(connection=connection, stream=stream)
        StreamState.objects.filter(pk=state.pk).update(paused=True, updated_at=timezone.now())
        state.paused = True
        _audit_stream("sync.paused", connection=connection, stream=stream, actor=actor, request=request)
    return state


def stream_resume(
    *, connection: Connection, stream: str, actor: Any = None, request: HttpRequest | None = None
) -> StreamState:
    """Resume scheduled syncs; the stream is due at once, to catch up on what changed meanwhile."""
    with transaction.atomic(using=current_tenant().db_alias):
        state = stream_state_get(connection=connection, stream=stream)
        now = timezone.now()
        StreamState.objects.filter(pk=state.pk).update(paused=False, next_run_at=now, updated_at=now)
        state.paused, state.next_run_at = False, now
        _audit_stream("sync.resumed", connection=connection, stream=stream, actor=actor, request=request)
    return state


def stream_schedule_set(
    *,
    connection: Connection,
    stream: str,
    interval_seconds: int,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> StreamState:
    """Sync a stream every `interval_seconds` (at least a minute), starting now."""
    if interval_seconds < 60:
        raise ValueError("interval_seconds must be at least 60")
    with transaction.atomic(using=current_tenant().db_alias):
        state = stream_state_get(connection=connection, stream=stream)
        before = state.interval_seconds
        now = timezone.now()
        StreamState.objects.filter(pk=state.pk).update(
            interval_seconds=interval_seconds, next_run_at=now, updated_at=now
        )
        state.interval_seconds, state.next_run_at = interval_seconds, now
        _audit_stream(
            "sync.schedule_changed",
            connection=connection,
            stream=stream,
            actor=actor,
            request=request,
            interval_seconds=[before, interval_seconds],
        )
    return state


# --- retention and erasure (registered in IntegrationsConfig.ready) -----------------------------------------
def _delete_in_batches(queryset: Any, batch_size: int) -> int:
    """Delete `queryset` a batch of primary keys at a time, each its own short statement."""
    total = 0
    while pks := list(queryset.values_list("pk", flat=True)[:batch_size]):
        queryset.model.objects.filter(pk__in=pks).delete()
        total += len(pks)  # rows of this model; cascaded attempts are not counted
    return total


def purge_synced_records(*, tenant: Any, cutoff: datetime, batch_size: int) -> int:
    """Delete the hub's copies of vendor records that have not changed at the vendor since `cutoff`."""
    with tenant_context(tenant):
        return _delete_in_batches(SyncedRecord.objects.filter(updated_at__lt=cutoff), batch_size)


def purge_sync_logs(*, tenant: Any, cutoff: datetime, batch_size: int) -> int:
    """Delete sync runs (and their attempts) created before `cutoff`; runs still open are kept."""
    open_states = (RunStatus.QUEUED, RunStatus.RUNNING)
    with tenant_context(tenant):
        old = SyncRun.objects.filter(created_at__lt=cutoff).exclude(status__in=open_states)
        return _delete_in_batches(old, batch_size)


#: Canonical fields that hold a person's phone number (contacts, leads, orders' customers).
PHONE_FIELDS = ("phone", "mobile", "mobile_phone", "customer_phone", "contact_phone")


def with_phone_digits(queryset: QuerySet[Any], column: str, phone: str) -> tuple[QuerySet[Any], Q]:
    """Annotate the digits of each phone field of a JSON `column`, and the Q matching `phone` (digits).

    Vendors store numbers as typed ("+49 (170) 123-4567"): compared digits only, like Subject.phone. The
    comparison scans the tenant's rows; erasure is rare and batched, so no index is kept for it.
    """
    names = {f"_phone_{key}": key for key in PHONE_FIELDS}
    annotated = queryset.alias(
        **{
            alias: Func(
                KeyTextTransform(key, column),
                Value(r"\D"),
                Value(""),
                Value("g"),
                function="regexp_replace",
                output_field=CharField(),
            )
            for alias, key in names.items()
        }
    )
    query = Q()
    for alias in names:
        query |= Q(**{alias: phone})
    return annotated, query


def erase_synced_records(*, tenant: Any, subject: Subject) -> int:
    """Delete the subject's synced records, found by e-mail (stored normalized), phone number (any phone
    field, digits compared) or external id.

    The vendor still holds the person: erase there too, or the next backfill brings the record back.
    """
    query = Q()
    if subject.email:
        query |= Q(email=subject.email)
    if subject.external_id:
        query |= Q(external_id=subject.external_id)
    with tenant_context(tenant):
        records = SyncedRecord.objects.all()
        if subject.phone:
            records, phone_query = with_phone_digits(records, "fields", subject.phone)
            query |= phone_query
        if not query:
            return 0
        return _delete_in_batches(records.filter(query), 1_000)
