"""Console pages of handoff routing (admins: MANAGE_CHANNELS): the ordered routing rules with move up/down,
route and business-hours forms, deletes behind a confirmation, the "which route would this conversation
take" preview, and the live view of handed-off conversations. Thin: forms shape input, the services in
apps/chat/services/routes.py validate, check the role and audit."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.chat.models import BusinessHours, HandoffRoute
from apps.chat.routing_forms import HandoffFilterForm, HoursForm, PreviewForm, RouteForm
from apps.chat.selectors.channels import channel_get
from apps.chat.selectors.conversations import channel_names
from apps.chat.selectors.handoffs import (
    connections_of_kinds,
    handoff_list,
    handoff_rows,
    hours_get,
    hours_list,
    route_get,
    route_list,
)
from apps.chat.services.actions import TICKET_KINDS
from apps.chat.services.routes import (
    hours_create,
    hours_delete,
    hours_update,
    route_create,
    route_delete,
    route_move,
    route_update,
)
from apps.chat.services.routing import RouteQuery, preview_instant, route_preview
from apps.core.confirm import Confirmation, confirmation_required
from apps.core.errors import HubError, NotFound, ValidationFailed
from apps.core.forms import add_service_errors
from apps.integrations.models import Connection
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 25
manage = tenant_permission_required(roles.MANAGE_CHANNELS)


def _route(request: HttpRequest, pk: Any) -> HandoffRoute:
    try:
        return route_get(tenant=request.tenant, pk=pk)  # type: ignore[attr-defined]
    except NotFound:
        raise Http404 from None


def _hours(request: HttpRequest, pk: Any) -> BusinessHours:
    try:
        return hours_get(tenant=request.tenant, pk=pk)  # type: ignore[attr-defined]
    except NotFound:
        raise Http404 from None


def _ticket_connections() -> list[Connection]:
    return connections_of_kinds(kinds=TICKET_KINDS)


def _to_list(tenant_slug: str) -> HttpResponse:
    return redirect("chat:route-list", tenant_slug=tenant_slug)


@manage
@require_http_methods(["GET"])
def route_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The routing rules in the order they are tried, the business hours, and the preview form."""
    tenant = request.tenant  # type: ignore[attr-defined]
    names = {c.pk: c.name for c in _ticket_connections()}
    routes = list(route_list(tenant=tenant))
    rows = [
        (
            route,
            names.get(route.connection_id, _("(deleted)")),
            names.get(route.fallback_connection_id, "") if route.fallback_connection_id else "",
        )
        for route in routes
    ]
    context = {
        "rows": rows,
        "hours": list(hours_list(tenant=tenant)),
        "preview_form": PreviewForm(
            initial={"region": tenant.region_code}, channels=channel_names(tenant=tenant)
        ),
        "has_connections": bool(names),
    }
    return render(request, "chat/route_list.html", context)


@manage
@require_http_methods(["GET", "POST"])
def route_edit_view(request: HttpRequest, tenant_slug: str, pk: Any = None) -> HttpResponse:
    """Create (no pk) or change a route."""
    tenant = request.tenant  # type: ignore[attr-defined]
    route = _route(request, pk) if pk is not None else None
    form = RouteForm(
        request.POST or None,
        connections=_ticket_connections(),
        hours=list(hours_list(tenant=tenant)),
        initial=RouteForm.initial_of(route) if route else {"enabled": True},
    )
    if request.method == "POST" and form.is_valid():
        try:
            if route is None:
                route = route_create(
                    tenant=tenant, data=form.route_data(), actor=request.user, request=request
                )
            else:
                route = route_update(
                    route=route, changes=form.route_data(), actor=request.user, request=request
                )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Route “%(name)s” saved.") % {"name": route.name})
            return _to_list(tenant_slug)
    context = {"form": form, "route": route}
    return render(request, "chat/route_form.html", context, status=400 if form.errors else 200)


@manage
@require_http_methods(["GET", "POST"])
def route_delete_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    route = _route(request, pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Delete route"),
            object_name=route.name,
            consequence=_(
                "Handoffs it matched go to the next matching route, or to the channel's ticket connection. "
                "Open tickets stay where they are. This cannot be undone."
            ),
            button=_("Delete route"),
            cancel_url=reverse("chat:route-edit", args=[tenant_slug, route.pk]),
        ),
    )
    if page is not None:
        return page
    route_delete(route=route, actor=request.user, request=request)
    messages.success(request, _("Route “%(name)s” deleted.") % {"name": route.name})
    return _to_list(tenant_slug)


@manage
@require_POST
def route_move_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Move a route one place up or down (the form's `direction`)."""
    route = _route(request, pk)
    direction = request.POST.get("direction")
    if direction in ("up", "down"):
        route_move(route=route, offset=-1 if direction == "up" else 1, actor=request.user, request=request)
    else:
        messages.error(request, _("Choose up or down."))
    return _to_list(tenant_slug)


@manage
@require_http_methods(["GET", "POST"])
def hours_edit_view(request: HttpRequest, tenant_slug: str, pk: Any = None) -> HttpResponse:
    """Create (no pk) or change business hours: a weekly grid and holidays."""
    tenant = request.tenant  # type: ignore[attr-defined]
    hours = _hours(request, pk) if pk is not None else None
    form = HoursForm(request.POST or None, initial=HoursForm.initial_of(hours) if hours else None)
    weekly_errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        data = form.hours_data()
        try:
            if hours is None:
                hours = hours_create(tenant=tenant, data=data, actor=request.user, request=request)
            else:
                hours = hours_update(hours=hours, changes=data, actor=request.user, request=request)
        except ValidationFailed as exc:
            weekly_errors = list(exc.errors.get("weekly", []))  # shown above the grid
            for field, errors in exc.errors.items():
                for message in errors if field != "weekly" else []:
                    form.add_error(field if field in form.fields else None, message)
            if not exc.errors:
                form.add_error(None, str(exc))
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Business hours “%(name)s” saved.") % {"name": hours.name})
            return _to_list(tenant_slug)
    has_errors = bool(form.errors or weekly_errors)
    context = {"form": form, "hours": hours, "weekly_errors": weekly_errors}
    return render(request, "chat/hours_form.html", context, status=400 if has_errors else 200)


@manage
@require_http_methods(["GET", "POST"])
def hours_delete_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    hours = _hours(request, pk)
    used_by = ", ".join(hours.routes.values_list("name", flat=True))
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Delete business hours"),
            object_name=hours.name,
            consequence=(
                _("The routes that use them (%(routes)s) then answer at any hour. This cannot be undone.")
                % {"routes": used_by}
                if used_by
                else _("No route uses them. This cannot be undone.")
            ),
            button=_("Delete business hours"),
            cancel_url=reverse("chat:hours-edit", args=[tenant_slug, hours.pk]),
        ),
    )
    if page is not None:
        return page
    hours_delete(hours=hours, actor=request.user, request=request)
    messages.success(request, _("Business hours “%(name)s” deleted.") % {"name": hours.name})
    return _to_list(tenant_slug)


@manage
@require_http_methods(["GET"])
def route_preview_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Which route a conversation would take (nothing is written)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = PreviewForm(
        request.GET or None, initial={"region": tenant.region_code}, channels=channel_names(tenant=tenant)
    )
    preview = None
    if request.GET and form.is_valid():
        data = form.cleaned_data
        channel = None
        if data["channel"]:
            try:
                channel = channel_get(tenant=tenant, pk=data["channel"])
            except NotFound:  # deleted since the form was drawn: preview without it
                channel = None
        try:
            at = preview_instant(at=data["at"], zone=data["timezone"] or "UTC")
        except HubError as exc:
            add_service_errors(form, exc)
        else:
            query = RouteQuery(
                region=data["region"],
                locale=data["locale"],
                intent=data["intent"],
                channel_kind=data["channel_kind"],
            )
            zone = data["timezone"] or "UTC"
            preview = route_preview(tenant=tenant, query=query, at=at, zone=zone, channel=channel)
    status = 400 if form.errors else 200
    return render(request, "chat/route_preview.html", {"form": form, "preview": preview}, status=status)


@manage
@require_http_methods(["GET"])
def handoff_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Handed-off conversations, live: state, waiting time, queue, ticket number, time to first reply."""
    tenant = request.tenant  # type: ignore[attr-defined]
    names = channel_names(tenant=tenant)
    connections = _ticket_connections()
    form = HandoffFilterForm(request.GET or None, connections=connections, channels=names)
    filters = form.cleaned_data if form.is_valid() else {}
    queryset = handoff_list(
        state=filters.get("state", ""),
        connection_id=filters.get("connection") or None,
        channel_id=filters.get("channel") or None,
    )
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    connection_names = {c.pk: c.name for c in connections}
    rows = [
        (row, names.get(str(row.channel_id), ""), connection_names.get(row.handoff.connection_id, ""))
        for row in handoff_rows(page.object_list)
    ]
    context = {
        "page_obj": page,
        "rows": rows,
        "form": form,
        "can_read_transcripts": roles.can(request.user, request.membership, roles.VIEW_TRANSCRIPTS),  # type: ignore[attr-defined]
    }
    template = "chat/_handoff_rows.html" if request.htmx else "chat/handoff_list.html"  # type: ignore[attr-defined]
    return render(request, template, context)
