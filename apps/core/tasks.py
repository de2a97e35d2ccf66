"""The Celery task base class for tenant work: load the tenant by id, run inside its context.

Apps never import `hub`, so tasks use `celery.shared_task(base=TenantTask, ...)`. The tenant model is
looked up through the app registry because core sits below the tenants app in the dependency order.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from django.apps import apps

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
