"""Chat tasks: a messaging platform's message run as a turn (queue "default"), and the sweep for lost ones."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.chat.services.channel_inbound import (
    CHANNEL_INBOUND_TASK,
    CHANNEL_STATUS_TASK,
    Retry,
    channel_inbound_process,
    channel_inbound_requeue_stale,
    channel_status_apply,
)
from apps.core.tasks import TenantTask
from connectors.messaging import StatusUpdate


@shared_task(
    name=CHANNEL_INBOUND_TASK,
    base=TenantTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # bounded by the event's attempts (services/channel_inbound.MAX_ATTEMPTS)
)
def channel_inbound_task(self: Any, *, tenant_id: int, event_id: str) -> str:
    """Answer one platform message (idempotent: a redelivered task finds the event done)."""
    try:
        return channel_inbound_process(event_id=event_id)
    except Retry as exc:
        raise self.retry(countdown=exc.countdown, exc=exc) from exc


@shared_task(name=CHANNEL_STATUS_TASK, base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def channel_status_task(
    *,
    tenant_id: int,
    connection_id: str,
    platform_message_id: str,
    status: str,
    error: str = "",
    attempt: int,
) -> str:
    """Record a platform's delivery status that arrived before the outbox knew the message's id."""
    update = StatusUpdate(platform_message_id=platform_message_id, status=status, error=error)
    return channel_status_apply(connection_id=connection_id, status=update, attempt=attempt)


@shared_task(name="apps.chat.tasks.channel_inbound_requeue_task", acks_late=True, reject_on_worker_lost=True)
def channel_inbound_requeue_task() -> int:
    """Publish again the platform messages whose task was lost (by beat, every 60 s); return how many."""
    return channel_inbound_requeue_stale()
