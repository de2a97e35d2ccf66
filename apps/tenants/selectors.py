"""Reads of regions and tenants."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet

from apps.core.context import tenant_context
from apps.core.errors import NotFound
from apps.tenants.models import Region, RegionTenant, Tenant


def region_list(*, active_only: bool = True) -> QuerySet[Region]:
    qs = Region.objects.all()
    return qs.filter(is_active=True) if active_only else qs


def tenant_get(*, slug: str) -> Tenant:
    try:
        return Tenant.objects.select_related("home_region").get(slug=slug, is_active=True)
    except Tenant.DoesNotExist:
        raise NotFound("Tenant not found.") from None


def tenant_list() -> QuerySet[Tenant]:
    return Tenant.objects.select_related("home_region").all()


def tenant_has_region_data(*, tenant: Tenant) -> bool:
    """Tell whether the home region holds anything beyond the anchor row (then the region is fixed)."""
    from django.apps import apps

    with tenant_context(tenant):
        for model in apps.get_models():
            if (
                getattr(model, "hub_silo", None) == "region"
                and model is not RegionTenant
                and model.objects.exists()  # type: ignore[attr-defined]
            ):
                return True
    return False


def permitted_ids(*, user: Any, perm: str, model: type[Model]) -> set[str]:
    """Primary keys (as strings) of `model` objects on which `user` holds the guardian permission `perm`.

    Guardian keeps its rows in the control database, so its own get_objects_for_user (a subquery) cannot
    filter a region queryset: evaluate the ids here, then filter the region queryset with `pk__in`.
    """
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import UserObjectPermission

    codename = perm.split(".", 1)[-1]
    content_type = ContentType.objects.get_for_model(model)
    rows = UserObjectPermission.objects.filter(
        user_id=user.pk, content_type=content_type, permission__codename=codename
    ).values_list("object_pk", flat=True)
    return set(rows)
