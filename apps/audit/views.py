"""The compliance console: the tenant's audit log, event details, chain verification and signed exports.

Every page of events shown is recorded as one `audit.read` event through the API's service
(apps/audit/services.audit_read_record, channel "console"), repeats within the window left out; an export
records itself as `audit.export`.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.audit import signing
from apps.audit.forms import EventFilterForm, ExportForm
from apps.audit.models import AuditEventBase
from apps.audit.selectors import audit_event_changes, audit_event_get, audit_event_list
from apps.audit.services import audit_export, audit_read_record, audit_verify
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 50
VERIFY_COMMAND = "python manage.py audit_verify --export FILE"
#: How console reads are told apart from the API's (session or token) in `audit.read` events and their dedupe.
CONSOLE_VIA = {"via": "console"}


def _list_page(
    request: HttpRequest, filter_form: EventFilterForm, export_form: ExportForm, *, rows_only: bool = False
) -> HttpResponse:
    valid = filter_form.is_valid()
    page = None
    if valid:
        events = audit_event_list(filters=filter_form.selector_filters())
        page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    context: dict[str, Any] = {
        "filter_form": filter_form,
        "export_form": export_form,
        "page_obj": page,
        "filters_valid": valid,
        "public_key": signing.public_key_b64(),
        "verify_command": VERIFY_COMMAND,
    }
    if rows_only:
        # htmx swaps only 2xx answers, so filter errors come back as 200 with an alert in the fragment.
        response = render(request, "audit/_event_rows.html", context)
    else:
        status = 400 if filter_form.errors or export_form.errors else 200
        response = render(request, "audit/event_list.html", context, status=status)
    if page is not None:
        _record_read(request, filters=filter_form.export_filters(), events=list(page))
    return response


def _record_read(request: HttpRequest, *, filters: dict[str, Any], events: list[AuditEventBase]) -> None:
    """Record the page just built (after rendering, so it never shows its own read event)."""
    audit_read_record(
        tenant=request.tenant,  # type: ignore[attr-defined]
        actor=request.user,
        request=request,
        filters=filters,
        events=events,
        via=CONSOLE_VIA,
    )


@tenant_permission_required(roles.VIEW_AUDIT)
@require_GET
def event_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    return _list_page(
        request,
        EventFilterForm(request.GET),
        ExportForm(),
        rows_only=bool(request.htmx),  # type: ignore[attr-defined]
    )


@tenant_permission_required(roles.VIEW_AUDIT)
@require_GET
def event_detail_view(request: HttpRequest, tenant_slug: str, seq: int) -> HttpResponse:
    event = audit_event_get(seq=seq)
    if event is None:
        raise Http404
    changes = audit_event_changes(event)
    context = {"event": event, "changes": changes, "is_update": any(row.is_update for row in changes)}
    response = render(request, "audit/event_detail.html", context)
    _record_read(request, filters={"seq": seq}, events=[event])
    return response


@tenant_permission_required(roles.VIEW_AUDIT)
@require_POST
def verify_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    result = audit_verify(tenant=request.tenant, actor=request.user, request=request)  # type: ignore[attr-defined]
    return render(request, "audit/verify.html", {"result": result, "verified_at": timezone.now()})


@tenant_permission_required(roles.VIEW_AUDIT)
@require_POST
def export_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Download the filtered events as a signed zip (the service audits the export)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    filter_form, export_form = EventFilterForm(request.POST), ExportForm(request.POST)
    if not (filter_form.is_valid() and export_form.is_valid()):
        return _list_page(request, filter_form, export_form)
    fmt = export_form.cleaned_data["format"]
    data = audit_export(
        tenant=tenant,
        events=audit_event_list(filters=filter_form.selector_filters()),
        fmt=fmt,
        actor=request.user,
        request=request,
        filters=filter_form.export_filters(),
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="audit-{tenant.slug}-{stamp}-{fmt}.zip"'
    response["Cache-Control"] = "no-store"
    return response
