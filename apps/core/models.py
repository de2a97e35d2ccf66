"""Base classes that let a model declare its silo.

Control models (the default) live in the `default` database. Region models live in the home region of
their tenant; they keep `tenant_id` as a plain id because foreign keys cannot cross databases.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.db import models

from apps.core.context import current_tenant
from apps.core.errors import NoTenantContext

CONTROL = "control"
REGION = "region"


def silo_of(model: type[models.Model]) -> str:
    return getattr(model, "hub_silo", CONTROL)


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TenantScopedManager(models.Manager):
    """Default manager of region models: only the current tenant's rows are visible.

    Two tenants can share a region database, so routing alone is not isolation; this filter is.
    """

    def get_queryset(self) -> models.QuerySet[Any]:
        return super().get_queryset().filter(tenant_id=current_tenant().id)


class RegionModel(TimeStampedModel):
    """A tenant-owned row stored in the tenant's home region database."""

    hub_silo: ClassVar[str] = REGION

    tenant_id = models.BigIntegerField(db_index=True, editable=False)

    objects = TenantScopedManager()
    # Every tenant's rows in the routed region; for retention jobs, verification and operators only.
    all_tenants = models.Manager()  # noqa: DJ012 - a manager, not a field

    class Meta:
        abstract = True
        base_manager_name = "all_tenants"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Stamping the owner is data integrity, not business logic: a region row without a tenant is a leak.
        tenant = current_tenant()
        if self.tenant_id is None:
            self.tenant_id = tenant.id
        elif self.tenant_id != tenant.id:
            raise NoTenantContext(
                f"Refusing to save a row of tenant {self.tenant_id} in the context of tenant {tenant.id}."
            )
        super().save(*args, **kwargs)


class RegionObjectModel(RegionModel):
    """A region model that object permissions can point at.

    Guardian keeps permission rows in the control database keyed by primary key; integer keys from separate
    region databases would collide, so these objects get globally unique UUID keys.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        abstract = True
        base_manager_name = "all_tenants"
