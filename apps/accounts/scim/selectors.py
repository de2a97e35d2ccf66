"""SCIM reads: a tenant's provisioned users, groups and tokens (never another tenant's)."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from apps.accounts.models import ScimGroup, ScimToken, ScimUser
from apps.tenants.models import Tenant


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def scim_users(*, tenant: Tenant, query: Q | None = None) -> QuerySet[ScimUser]:
    qs = ScimUser.objects.filter(tenant=tenant).select_related("user", "tenant").prefetch_related("groups")
    if query is not None:
        qs = qs.filter(pk__in=ScimUser.objects.filter(query, tenant=tenant).values("pk"))
    return qs.order_by("id")


def scim_user_get(*, tenant: Tenant, scim_id: str) -> ScimUser | None:
    key = _uuid(scim_id)
    return scim_users(tenant=tenant).filter(scim_id=key).first() if key else None


def scim_groups(*, tenant: Tenant, query: Q | None = None, members: bool = True) -> QuerySet[ScimGroup]:
    qs = ScimGroup.objects.filter(tenant=tenant).select_related("tenant")
    if members:
        qs = qs.prefetch_related("members__user")
    if query is not None:
        qs = qs.filter(pk__in=ScimGroup.objects.filter(query, tenant=tenant).values("pk"))
    return qs.order_by("id")


def scim_group_get(*, tenant: Tenant, scim_id: str, members: bool = True) -> ScimGroup | None:
    key = _uuid(scim_id)
    return scim_groups(tenant=tenant, members=members).filter(scim_id=key).first() if key else None


def scim_tokens(*, tenant: Tenant) -> QuerySet[ScimToken]:
    return ScimToken.objects.filter(tenant=tenant).select_related("created_by").order_by("-created_at", "-pk")
