"""The Celery task base class for tenant work (load the tenant by id, run in its context); safe enqueueing.

Apps never import `hub`, so tasks use `celery.shared_task(base=TenantTask, ...)`. The tenant model is
looked up through the app registry because core sits below the tenants app in the dependency order.

Publishing is bounded (CELERY_TASK_PUBLISH_RETRY_POLICY, broker timeouts) and, on request paths, must never
turn a committed change into a server error: `task_enqueue` reports a broker failure instead of raising it,
for callers whose work is also recorded in the database and picked up again by a beat sweep.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from django.apps import apps
from django.db import transaction
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from apps.core.context import tenant_context

logger = logging.getLogger(__name__)


class TenantTask(Task):
    """Tasks whose keyword `tenant_id` names the tenant they work for.

    The body runs inside `tenant_context(tenant)`, so region models route to the tenant's home database.
    A tenant that was deleted or deactivated since the task was queued makes the task return None quietly:
    redelivered and late messages are normal, not errors.
    """

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tenant_id = kwargs.get("tenant_id")
        if tenant_id is None:
            raise TypeError(f"{self.name} must be called with the keyword argument tenant_id")
        tenant_model = apps.get_model("tenants", "Tenant")
        tenant = (
            tenant_model.objects.select_related("home_region").filter(pk=tenant_id, is_active=True).first()
        )
        if tenant is None:
            logger.info(
                "task skipped: tenant gone or inactive", extra={"task": self.name, "tenant_id": tenant_id}
            )
            return None
        with tenant_context(tenant):
            return super().__call__(*args, **kwargs)


#: What a publish raises when the broker is unreachable, stalled or refuses the connection.
BROKER_ERRORS: tuple[type[BaseException], ...] = (OperationalError, RedisError, OSError)


def task_enqueue(task: Task, *, kwargs: dict[str, Any]) -> bool:
    """Publish `task` with `kwargs`; on a broker failure log it and return False instead of raising.

    Only for work that is also recorded in the database, so a sweep can queue it again later.
    """
    try:
        task.apply_async(kwargs=kwargs)
    except BROKER_ERRORS as exc:
        logger.warning(
            "task not queued, the broker is unavailable (%s): %s; it is queued again later",
            type(exc).__name__,
            task.name,
            extra={"task": task.name},
        )
        return False
    return True


def task_enqueue_on_commit(task: Task, *, kwargs: dict[str, Any], using: str) -> None:
    """Publish `task` once the transaction on `using` commits; a broker failure is logged, not raised."""
    transaction.on_commit(lambda: task_enqueue(task, kwargs=kwargs), using=using)
