"""Reading SIEM destinations of the current tenant, with how far each is behind its chain."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce

from apps.audit.models import AuditEvent
from apps.siem.models import SiemDestination


def destination_list() -> list[SiemDestination]:
    """The tenant's destinations, each with `backlog` (events after its cursor), in one query."""
    backlog = (
        AuditEvent.all_tenants.filter(tenant_id=OuterRef("tenant_id"), seq__gt=OuterRef("delivered_seq"))
        .order_by()
        .values("tenant_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return list(
        SiemDestination.objects.annotate(
            backlog=Coalesce(Subquery(backlog, output_field=IntegerField()), 0)
        ).order_by("name")
    )


def destination_get(pk: Any) -> SiemDestination | None:
    """One of the current tenant's destinations (None for another tenant's or a malformed id)."""
    try:
        return SiemDestination.objects.filter(pk=pk).first()
    except (ValueError, TypeError):
        return None
