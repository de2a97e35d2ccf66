"""Celery tasks of SIEM streaming: thin wrappers over the services, routed to the `siem` queue."""

from __future__ import annotations

from celery import shared_task

from apps.core.tasks import TenantTask
from apps.siem.services import (
    DELIVER_TASK,
    KICK_TASK,
    siem_deliver,
    siem_due,
    siem_kick_destinations,
    siem_queue_delivery,
)


@shared_task(name=DELIVER_TASK, base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def siem_deliver_task(*, tenant_id: int, destination_id: str) -> int:
    """Deliver one destination's backlog; queue itself again when the time budget ran out with events left."""
    result = siem_deliver(destination_id=destination_id)
    if result.more:
        siem_queue_delivery(tenant_id=tenant_id, destination_id=destination_id)
    return result.delivered


@shared_task(name=KICK_TASK, base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def siem_kick_task(*, tenant_id: int) -> int:
    """Queue a delivery for each of the tenant's destinations (new events were appended)."""
    ids = siem_kick_destinations()
    for destination_id in ids:
        siem_queue_delivery(tenant_id=tenant_id, destination_id=destination_id)
    return len(ids)


@shared_task(name="apps.siem.tasks.siem_deliver_due", acks_late=True, reject_on_worker_lost=True)
def siem_deliver_due() -> int:
    """Queue a delivery for every destination with a backlog (by beat): catches up after outages, restarts
    and lost kicks, since the cursor, not the broker, says what is left."""
    due = siem_due()
    for tenant_id, destination_id in due:
        siem_queue_delivery(tenant_id=tenant_id, destination_id=destination_id)
    return len(due)
