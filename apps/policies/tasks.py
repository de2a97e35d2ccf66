"""Celery tasks of the policies app: thin wrappers that set the tenant context and call services."""

from __future__ import annotations

from celery import shared_task

from apps.core.context import current_tenant, tenant_context
from apps.core.tasks import TenantTask
from apps.policies.dsr import dsr_archive_build, dsr_archives_expire
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


# --- data-subject requests (issue 22) ----------------------------------------------------------------------
@shared_task(
    name="apps.policies.tasks.dsr_archive_build_task",
    base=TenantTask,
    acks_late=True,
    reject_on_worker_lost=True,
)
def dsr_archive_build_task(*, tenant_id: int, request_id: str) -> str | None:
    """Build one access archive (large subjects take a while: never in a web request). Idempotent."""
    dsr = dsr_archive_build(tenant=current_tenant(), request_id=request_id)
    return dsr.status if dsr is not None else None


@shared_task(name="apps.policies.tasks.dsr_archives_expire_task", acks_late=True, reject_on_worker_lost=True)
def dsr_archives_expire_task() -> int:
    """Delete access archives kept longer than HUB_DSR_ARCHIVE_DAYS (hourly, by beat)."""
    return dsr_archives_expire()
