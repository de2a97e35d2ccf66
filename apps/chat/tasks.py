"""Chat tasks: a messaging platform's message run as a turn (queue "default"), the sweep for lost ones, and
the handoff's refreshes (by webhook, by the ticket's delivery, by the poll)."""

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
from apps.chat.services.handoff_thread import (
    handoff_for_ticket_message,
    handoff_refresh,
    handoffs_due,
    handoffs_for_tickets,
    webhook_seen,
)
from apps.core.context import current_tenant
from apps.core.tasks import TenantTask, task_enqueue
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


# --- handoff (issue 18) --------------------------------------------------------------------------------
@shared_task(
    name="apps.chat.tasks.handoff_refresh_task", base=TenantTask, acks_late=True, reject_on_worker_lost=True
)
def handoff_refresh_task(*, tenant_id: int, handoff_id: int) -> int:
    """Refresh one handoff (idempotent: comments are stored once, a finished handoff is skipped); return the
    agent messages delivered."""
    refreshed = handoff_refresh(handoff_id=handoff_id)
    return refreshed.delivered if refreshed is not None else 0


@shared_task(name="apps.chat.tasks.handoff_poll_task", acks_late=True, reject_on_worker_lost=True)
def handoff_poll_task() -> int:
    """Queue a refresh of every active handoff whose poll is due (by beat, HUB_HANDOFF_POLL_SECONDS)."""
    queued = 0
    for tenant_id, handoff_id in handoffs_due():
        if task_enqueue(handoff_refresh_task, kwargs={"tenant_id": tenant_id, "handoff_id": handoff_id}):
            queued += 1
    return queued


def _refresh_soon(handoff_ids: list[int]) -> None:
    tenant_id = current_tenant().id
    for handoff_id in handoff_ids:
        task_enqueue(handoff_refresh_task, kwargs={"tenant_id": tenant_id, "handoff_id": handoff_id})


def on_ticket_activity(sender: Any, *, connection: Any, ticket_ids: list[str], **kwargs: Any) -> None:
    """integrations.signals.ticket_activity: a vendor webhook named these tickets; refresh their handoffs."""
    webhook_seen(connection_id=connection.pk)
    _refresh_soon(handoffs_for_tickets(connection_id=connection.pk, ticket_ids=ticket_ids))


def on_outbox_settled(sender: Any, *, message: Any, status: str, **kwargs: Any) -> None:
    """integrations.signals.outbox_settled: a handoff's ticket was delivered or dead-lettered: learn it."""
    handoff_id = handoff_for_ticket_message(message)
    if handoff_id is not None:
        _refresh_soon([handoff_id])
