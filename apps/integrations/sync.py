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
import hashlib
import json
import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from apps.core.context import current_tenant
from apps.integrations.conf import connector_class, connector_session
from apps.integrations.models import Connection, RunStatus, StreamState, SyncAttempt, SyncedRecord, SyncRun
from connectors.base import Connector, Cursor, Record
from connectors.errors import ConnectorError, RateLimited
from connectors.http import redact

logger = logging.getLogger(__name__)

BATCH_SIZE = 2_000
#: HTTP statuses that are worth retrying although the connector called them permanent (CONVENTIONS.md).
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
ERROR_LIMIT = 2_000

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
def build_connector(connection: Connection) -> Connector:
    """Instantiate the connection's connector with the hub's outbound session (guard, trust, redaction)."""
    return connector_class(connection.kind)(connection.connector_config(), session=connector_session())


def is_transient(exc: ConnectorError) -> bool:
    """Tell whether retrying can help: the error type says so, or the status is one worth retrying."""
    return not exc.permanent or exc.status in RETRYABLE_STATUSES


def retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, RateLimited) else None


def lock_key(*, tenant_id: int, connection_id: Any, stream: str) -> int:
    """A signed 64-bit advisory-lock key for one (tenant, connection, stream)."""
    digest = hashlib.blake2b(f"sync:{tenant_id}:{connection_id}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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
    value, seen = cursor.value, set(cursor.seen_ids)
    for record in batch:
        if value is None or record.updated_at > value:
            value, seen = record.updated_at, {record.external_id}
        elif record.updated_at == value:
            seen.add(record.external_id)
    return Cursor(value, frozenset(seen))


def _later(stored: Cursor, new: Cursor) -> Cursor:
    """The cursor that covers everything both cover (for a backfill that must never move the cursor back)."""
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


def _try_lock(using: str, key: int) -> bool:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def _unlock(using: str, key: int) -> None:
    try:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    except Exception:  # a broken connection released the session lock with it
        logger.warning("advisory unlock failed; the connection is gone and so is the lock")
        connections[using].close()


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
    if not _try_lock(using, key):
        return _finish(run, RunStatus.SKIPPED, "Another sync of this stream is running.")
    try:
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
        _unlock(using, key)


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
        connector = build_connector(connection)
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
    except ConnectorError as exc:
        message = redact(exc.message, secrets)[:ERROR_LIMIT]
        retry_after = retry_after_of(exc)
        attempt.error, attempt.retry_after, attempt.finished_at = message, retry_after, timezone.now()
        attempt.save(update_fields=["error", "retry_after", "finished_at", "updated_at"])
        if not is_transient(exc):
            return _finish(run, RunStatus.FAILED, message)
        SyncRun.objects.filter(pk=run.pk).update(
            status=RunStatus.QUEUED, error=message, updated_at=timezone.now()
        )
        raise SyncFailed(message, run_id=run.pk, retry_after=retry_after) from exc
    finished = timezone.now()
    attempt.finished_at = finished
    attempt.save(update_fields=["finished_at", "updated_at"])
    StreamState.objects.filter(pk=state.pk).update(
        last_success_at=finished,
        next_run_at=finished + timedelta(seconds=state.interval_seconds),
        updated_at=finished,
    )
    return _finish(run, RunStatus.SUCCEEDED)
