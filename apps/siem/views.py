"""Console pages of SIEM streaming: the destinations with their delivery state (compliance officers read it)
and their setup (admins): add, edit, pause/resume, delete, send a test line. Services audit every change."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.confirm import Confirmation, confirmation_required
from apps.core.forms import add_service_errors
from apps.siem.forms import DestinationForm
from apps.siem.models import SiemDestination
from apps.siem.selectors import destination_get, destination_list
from apps.siem.services import (
    destination_create,
    destination_delete,
    destination_set_enabled,
    destination_update,
    siem_send_test,
)
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required


def _destination(pk: str) -> SiemDestination:
    destination = destination_get(pk)
    if destination is None:
        raise Http404
    return destination


@tenant_permission_required(roles.VIEW_AUDIT)
@require_GET
def destination_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    can_manage = roles.can(request.user, request.membership, roles.MANAGE_SETTINGS)  # type: ignore[attr-defined]
    context = {"destinations": destination_list(), "can_manage": can_manage}
    return render(request, "siem/destination_list.html", context)


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_http_methods(["GET", "POST"])
def destination_create_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    form = DestinationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        start = data.pop("start")
        try:
            destination_create(tenant=tenant, data=data, start=start, actor=request.user, request=request)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("SIEM destination added."))
            return redirect("siem:destination-list", tenant_slug=tenant.slug)
    context = {"form": form, "destination": None}
    response = render(request, "siem/destination_form.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_http_methods(["GET", "POST"])
def destination_edit_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    destination = _destination(pk)
    initial = {n: getattr(destination, n) for n in ("name", "kind", "host", "port", "url", "ca_bundle")}
    initial["client_cert"] = ""  # stored encrypted, write-only like the key
    form = DestinationForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            destination_update(destination=destination, data=data, actor=request.user, request=request)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("SIEM destination saved."))
            return redirect("siem:destination-list", tenant_slug=tenant.slug)
    context = {"form": form, "destination": destination}
    response = render(request, "siem/destination_form.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_POST
def destination_toggle_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    destination = _destination(pk)
    enabled = not destination.enabled
    destination_set_enabled(destination=destination, enabled=enabled, actor=request.user, request=request)
    messages.success(request, _("Destination resumed.") if enabled else _("Destination paused."))
    return redirect("siem:destination-list", tenant_slug=tenant_slug)


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_http_methods(["GET", "POST"])
def destination_delete_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    destination = _destination(pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Delete SIEM destination"),
            object_name=destination.name,
            consequence=_(
                "Audit events are no longer sent there and its delivery position is lost. "
                "The audit log itself is kept."
            ),
            button=_("Delete destination"),
            cancel_url=reverse("siem:destination-list", kwargs={"tenant_slug": tenant_slug}),
        ),
    )
    if page is not None:
        return page
    destination_delete(destination=destination, actor=request.user, request=request)
    messages.success(request, _("SIEM destination deleted."))
    return redirect("siem:destination-list", tenant_slug=tenant_slug)


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_POST
def destination_test_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    """Send one synthetic line marked test; the audit chain and the cursor are not touched."""
    error = siem_send_test(destination=_destination(pk), actor=request.user, request=request)
    if error:
        messages.error(request, _("The test line was not delivered: %(error)s") % {"error": error})
    else:
        messages.success(request, _("Test line delivered."))
    return redirect("siem:destination-list", tenant_slug=tenant_slug)
