"""Queueing the app's Celery tasks by name, so services never import tasks.py (tasks call services).

The names are the tasks' registered names (`name=` in tasks.py). Messages already waiting in a deployed
broker carry them, so they never change. The task object comes from Celery's registry (IntegrationsConfig
imports tasks.py in every process), so it is published with its own options and routes.

Outbox relays are coalesced here too: a burst of captures for one connection costs one queued relay.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import Task, current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from apps.core.context import current_tenant
from apps.core.tasks import BROKER_ERRORS, task_enqueue, task_enqueue_on_commit
from apps.integrations.models import OutboxMessage

SYNC_STREAM_TASK = "apps.integrations.tasks.sync_stream_task"
OUTBOX_RELAY_TASK = "apps.integrations.tasks.outbox_relay_task"
#: How long the beat waits before queueing another relay for a connection that already has one queued.
RELAY_DEDUP_SECONDS = 30


def _task(name: str) -> Task:
    return current_app.tasks[name]


# --- sync runs ---------------------------------------------------------------------------------------------
def sync_stream_enqueue(*, kwargs: dict[str, Any]) -> bool:
    """Publish one sync run now; False when the broker is away (the run stays queued for the sweep)."""
    return task_enqueue(_task(SYNC_STREAM_TASK), kwargs=kwargs)


def sync_stream_enqueue_on_commit(*, kwargs: dict[str, Any], using: str) -> None:
    """Publish one sync run once the transaction on `using` commits (the run row is committed first)."""
    task_enqueue_on_commit(_task(SYNC_STREAM_TASK), kwargs=kwargs, using=using)


# --- outbox relays -----------------------------------------------------------------------------------------
def outbox_kick(*, message: OutboxMessage) -> None:
    """Queue a relay of the message's connection once the current transaction commits.

    Kicks coalesce: while a relay of the connection is queued and not yet started, no other is queued,
    so a burst of a thousand captures costs a handful of broker messages, each delivering in batches.
    Best effort: with the broker (or Redis) down the commit still succeeds and the beat relay delivers.
    """
    tenant = current_tenant()
    tenant_id, connection_id = tenant.id, message.connection_id
    transaction.on_commit(
        lambda: outbox_relay_queue(tenant_id=tenant_id, connection_id=connection_id),
        using=tenant.db_alias,
        robust=True,  # anything but a broker error (those return False) is a bug: logged, never a 500
    )


def _relay_key(tenant_id: int, connection_id: Any) -> str:
    return f"outbox:relay:{tenant_id}:{connection_id}"


def outbox_relay_queue(*, tenant_id: int, connection_id: Any) -> bool:
    """Queue a relay task for one connection unless one is queued already; return whether it queued.

    The marker lives in Redis and expires by itself (a relay lost with its worker blocks nothing for
    longer than that); the relay removes it when it starts, so changes committed meanwhile get a relay.
    """
    key = _relay_key(tenant_id, connection_id)
    ttl = min(RELAY_DEDUP_SECONDS, settings.HUB_OUTBOX_LEASE_SECONDS)
    try:
        if not cache.add(key, 1, timeout=ttl):
            return False
    except BROKER_ERRORS:
        pass  # Redis is away: queue without the marker (a relay more is harmless) or fail below
    if task_enqueue(
        _task(OUTBOX_RELAY_TASK), kwargs={"tenant_id": tenant_id, "connection_id": str(connection_id)}
    ):
        return True
    with contextlib.suppress(*BROKER_ERRORS):
        cache.delete(key)  # let the next kick or beat tick try again
    return False


def outbox_relay_started(*, tenant_id: int, connection_id: Any) -> None:
    """Let kicks and the beat queue another relay for this connection (its queued one is running now).

    Best effort: with Redis away the marker stays until it expires (seconds), and the relay runs anyway.
    """
    with contextlib.suppress(*BROKER_ERRORS):
        cache.delete(_relay_key(tenant_id, connection_id))
