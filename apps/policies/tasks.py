"""Celery tasks of the policies app: thin wrappers that set the tenant context and call services."""

from __future__ import annotations

from celery import shared_task

from apps.core.context import tenant_context
from apps.policies.services import retention_enforce
from apps.tenants.models import Tenant


@shared_task(acks_late=True, reject_on_worker_lost=True)
def retention_enforce_all() -> int:
    """Queue one retention run per tenant (daily, by beat); a slow tenant never delays the others."""
    ids = list(Tenant.objects.order_by("pk").values_list("pk", flat=True))
    for tenant_id in ids:
        retention_enforce_tenant.delay(tenant_id=tenant_id)
    return len(ids)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def retention_enforce_tenant(*, tenant_id: int) -> int | None:
    """Purge one tenant's data older than its policy allows. Idempotent, so safe to redeliver."""
    tenant = Tenant.objects.select_related("home_region").filter(pk=tenant_id).first()
    if tenant is None:
        return None
    with tenant_context(tenant):
        return retention_enforce(tenant=tenant).total
