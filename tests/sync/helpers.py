"""What the sync task tests share: the task's arguments and the runs it left."""

from __future__ import annotations

from typing import Any

from apps.core.context import tenant_context
from apps.integrations.models import SyncRun
from apps.tenants.models import Tenant


def task_kwargs(tenant: Tenant, connection: Any, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant.id,
        "connection_id": str(connection.pk),
        "stream": "contacts",
        "trigger": "manual",
        **extra,
    }


def runs(tenant: Tenant) -> list[SyncRun]:
    with tenant_context(tenant):
        return list(SyncRun.objects.order_by("pk"))
