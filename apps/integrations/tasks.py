"""Celery tasks of the integrations app: thin wrappers that take ids and call the services.

Services never import this module: they queue tasks by name (services/dispatch.py). The names are fixed
with `name=` (messages waiting in a deployed broker, routes, time limits and the beat schedule use them).

Retries live here (the service runs one attempt): transient errors come back with exponential backoff and
full jitter, honouring a vendor's Retry-After up to a cap (retry.py); permanent errors already failed the run.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from apps.core.context import tenant_context
from apps.core.tasks import TenantTask
from apps.integrations.retry import sync_retry_delay
from apps.integrations.services.deadletters import sync_run_exhausted
from apps.integrations.services.dispatch import (
    OUTBOX_RELAY_TASK,
    SYNC_STREAM_TASK,
    outbox_relay_queue,
    outbox_relay_started,
)
from apps.integrations.services.outbox import outbox_due, outbox_relay
from apps.integrations.services.sync import SyncFailed, streams_claim_due, sync_requeue_stale, sync_stream

logger = logging.getLogger(__name__)


@shared_task(
    name=SYNC_STREAM_TASK,
    base=TenantTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # counted against settings.HUB_SYNC_MAX_RETRIES below (read at run time)
)
def sync_stream_task(
    self: Any,
    *,
    tenant_id: int,
    connection_id: str,
    stream: str,
    trigger: str,
    backfill: bool = False,
    run_id: int | None = None,
) -> str | None:
    """Sync one stream of one connection; idempotent, so a redelivered message is harmless."""
    try:
        run = sync_stream(
            connection_id=connection_id, stream=stream, trigger=trigger, backfill=backfill, run_id=run_id
        )
    except SyncFailed as exc:
        retries = self.request.retries
        if retries >= settings.HUB_SYNC_MAX_RETRIES:
            sync_run_exhausted(run_id=exc.run_id, error=exc.message, attempts=retries + 1)
            return "failed"
        kwargs = {
            "tenant_id": tenant_id,
            "connection_id": connection_id,
            "stream": stream,
            "trigger": trigger,
            "backfill": backfill,
            "run_id": exc.run_id,
        }
        countdown = sync_retry_delay(retries=retries, retry_after=exc.retry_after)
        raise self.retry(kwargs=kwargs, countdown=countdown, exc=exc) from None
    return None if run is None else str(run.status)


@shared_task(name="apps.integrations.tasks.sync_due", acks_late=True, reject_on_worker_lost=True)
def sync_due() -> int:
    """Queue every stream whose next scheduled sync is due (by beat, every 30 s); return how many."""
    queued = 0
    for tenant, items in streams_claim_due():
        with tenant_context(tenant):
            for connection_id, stream in items:
                sync_stream_task.delay(
                    tenant_id=tenant.id, connection_id=str(connection_id), stream=stream, trigger="schedule"
                )
                queued += 1
    return queued


@shared_task(
    name="apps.integrations.tasks.sync_requeue_stale_task", acks_late=True, reject_on_worker_lost=True
)
def sync_requeue_stale_task() -> int:
    """Publish again the queued syncs whose message was lost (by beat, every 30 s); return how many."""
    return sync_requeue_stale()


# --- outbox relay (queue "outbox", see CELERY_TASK_ROUTES) ------------------------------------------------
@shared_task(name=OUTBOX_RELAY_TASK, base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def outbox_relay_task(*, tenant_id: int, connection_id: str) -> int:
    """Deliver one connection's due outbox messages in order; idempotent, so redelivery is harmless."""
    outbox_relay_started(tenant_id=tenant_id, connection_id=connection_id)
    return outbox_relay(connection_id=connection_id)


@shared_task(name="apps.integrations.tasks.outbox_relay_due", acks_late=True, reject_on_worker_lost=True)
def outbox_relay_due() -> int:
    """Queue a relay per connection with deliverable messages (by beat, every few seconds); return how many.

    The messages live in the database, not the broker, so this also resumes delivery after a worker
    restart, a lost task or a vendor outage.
    """
    return sum(
        outbox_relay_queue(tenant_id=tenant_id, connection_id=connection_id)
        for tenant_id, connection_id in outbox_due()
    )
