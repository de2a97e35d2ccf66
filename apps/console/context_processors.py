"""Template context for the console shell: navigation, tenant switcher."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from apps.console.navigation import AREAS
from apps.tenants import roles
from apps.tenants.models import Tenant


def console(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    tenant = getattr(request, "tenant", None)
    if user is None or not user.is_authenticated:
        return {}
    context: dict[str, Any] = {
        "switcher_tenants": lambda: (
            Tenant.objects.filter(is_active=True).only("slug", "name")
            if user.is_staff
            else Tenant.objects.filter(memberships__user=user, is_active=True).only("slug", "name")
        ),
    }
    if tenant is not None:
        membership = getattr(request, "membership", None)
        resolver = getattr(request, "resolver_match", None)
        current = resolver.url_name if resolver else ""
        context["nav"] = [
            {
                "key": area.key,
                "label": area.label,
                "url": reverse(area.url_name, kwargs={"tenant_slug": tenant.slug}),
                "active": resolver is not None
                and reverse(area.url_name, kwargs={"tenant_slug": tenant.slug}) == request.path,
            }
            for area in AREAS
            if roles.can(user, membership, area.perm)
        ]
        context["current_url_name"] = current
        context["tenant_perms"] = {
            perm for perm in roles.TENANT_PERMISSIONS if roles.can(user, membership, perm)
        }
    return context
