"""Console entry pages: tenant picker, tenant overview, and the areas later features fill."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from apps.console.navigation import AREAS
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required
from apps.tenants.models import Membership, Tenant


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """List the tenants the user can open; go straight in when there is only one."""
    if request.user.is_staff:
        tenants = list(Tenant.objects.select_related("home_region").filter(is_active=True))
    else:
        tenants = list(
            Tenant.objects.select_related("home_region").filter(
                memberships__user=cast(Any, request.user), is_active=True
            )
        )
    if len(tenants) == 1 and not request.user.is_staff:
        return redirect("console:tenant-home", tenant_slug=tenants[0].slug)
    return render(request, "console/home.html", {"tenants": tenants})


@login_required
@require_GET
def switch(request: HttpRequest) -> HttpResponse:
    """Open the tenant chosen in the switcher (a GET form, so it works without JavaScript)."""
    slug = request.GET.get("tenant", "")
    if not slug:
        return redirect("console:home")
    return redirect("console:tenant-home", tenant_slug=slug)


@tenant_permission_required(roles.VIEW_CONSOLE)
@require_GET
def tenant_home(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    context = {
        "member_count": Membership.objects.filter(tenant=tenant).count(),
        "membership": request.membership,  # type: ignore[attr-defined]
    }
    return render(request, "console/tenant_home.html", context)


AREA_TEXT = {
    "dashboards": _("Conversation, sync and cost dashboards will be shown here."),
}


def _area_view(key: str) -> Callable[..., HttpResponse]:
    area = next(a for a in AREAS if a.key == key)

    @tenant_permission_required(area.perm)
    @require_GET
    def view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
        if key not in AREA_TEXT:
            raise Http404
        return render(request, "console/area.html", {"area": area, "text": AREA_TEXT[key]})

    view.__name__ = f"area_{key}"
    return view


area_views = {key: _area_view(key) for key in AREA_TEXT}
