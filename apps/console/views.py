"""Console entry pages: tenant picker, tenant overview, dashboards, and the areas later features fill."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from apps.console import charts
from apps.console.forms import WindowForm
from apps.console.navigation import AREAS
from apps.console.selectors.dashboards import OUTCOMES, WINDOWS, platform_dashboard, tenant_dashboard
from apps.console.selectors.languages import language_summary
from apps.console.selectors.overview import tenant_overview
from apps.tenants import roles
from apps.tenants.decorators import operator_required, tenant_permission_required
from apps.tenants.models import Tenant


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
    """Where an admin starts the day: what needs attention, in the sections the member may see."""
    membership = request.membership  # type: ignore[attr-defined]
    overview = tenant_overview(tenant=request.tenant, user=request.user, membership=membership)  # type: ignore[attr-defined]
    return render(request, "console/tenant_home.html", {"overview": overview, "membership": membership})


AREA_TEXT: dict[str, Any] = {}


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


def _window(request: HttpRequest) -> tuple[WindowForm, Any]:
    """The dashboard's period from the query string; None when it is not one of the offered ones."""
    form = WindowForm(request.GET)
    return form, WINDOWS[form.cleaned_data["window"]] if form.is_valid() else None


@tenant_permission_required(roles.VIEW_DASHBOARDS)
@require_GET
def dashboard(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The tenant's conversations, answer quality and latency, sync health, costs and translation coverage."""
    form, window = _window(request)
    context: dict[str, Any] = {"form": form, "windows": WINDOWS, "outcomes": OUTCOMES}
    if window is None:
        return render(request, "console/dashboard.html", context, status=400)
    data = tenant_dashboard(window=window)
    context.update(dashboard=data, charts=charts.tenant_charts(data))
    context["languages"] = language_summary()  # issue 21: the last 7 days per locale
    return render(request, "console/dashboard.html", context)


@login_required
@operator_required
@require_GET
def platform_dashboard_view(request: HttpRequest) -> HttpResponse:
    """Every tenant at a glance, for platform operators: activity, fallbacks, latency, cost, sync health."""
    form, window = _window(request)
    context: dict[str, Any] = {"form": form, "windows": WINDOWS, "outcomes": OUTCOMES}
    if window is None:
        return render(request, "console/platform_dashboard.html", context, status=400)
    data = platform_dashboard(window=window)
    context.update(dashboard=data, charts=charts.platform_charts(data))
    return render(request, "console/platform_dashboard.html", context)
