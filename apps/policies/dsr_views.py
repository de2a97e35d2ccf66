"""Console pages of the data-subject request register: list, register, detail with timeline, actions and
the access archive download. Compliance officers read (VIEW_POLICIES); admins act (MANAGE_SETTINGS, as the
erasure page does)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.errors import HubError
from apps.core.forms import add_service_errors
from apps.policies.dsr import (
    HANDLEABLE_STATES,
    dsr_archive_download,
    dsr_can_start,
    dsr_create,
    dsr_extend,
    dsr_notification_handle,
    dsr_reject,
    dsr_start,
)
from apps.policies.dsr_forms import DsrCreateForm, DsrExtendForm, DsrFilterForm, DsrHandleForm, DsrRejectForm
from apps.policies.dsr_selectors import dsr_deadline, dsr_get, dsr_has_archive, dsr_list, dsr_timeline
from apps.policies.models import DataSubjectRequest, RequestKind
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 25


def _state_labels() -> dict[str, str]:
    """What each vendor notification state reads as (the outbox's states plus the register's own)."""
    return {
        "pending": _("Pending"),
        "delivering": _("Delivering"),
        "delivered": _("Delivered"),
        "dead": _("Dead"),
        "discarded": _("Discarded"),
        "manual": _("To be handled by hand"),
        "handled": _("Handled"),
    }


def _can_manage(request: HttpRequest) -> bool:
    return roles.can(request.user, request.membership, roles.MANAGE_SETTINGS)  # type: ignore[attr-defined]


def _get(pk: Any) -> DataSubjectRequest:
    dsr = dsr_get(pk=pk)
    if dsr is None:
        raise Http404
    return dsr


@tenant_permission_required(roles.VIEW_POLICIES)
@require_GET
def dsr_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    form = DsrFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    page = Paginator(
        dsr_list(status=filters.get("status", ""), kind=filters.get("kind", "")), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    now = timezone.now()
    rows = [(dsr, dsr_deadline(dsr, now=now)) for dsr in page]
    context = {"filter_form": form, "page_obj": page, "rows": rows, "can_manage": _can_manage(request)}
    return render(request, "policies/dsr_list.html", context, status=400 if form.errors else 200)


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_http_methods(["GET", "POST"])
def dsr_create_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    form = DsrCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            # Empty identifiers are absent ones (Subject.of).
            dsr = dsr_create(tenant=tenant, actor=request.user, request=request, **form.cleaned_data)
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Request registered."))
            return redirect("policies:dsr-detail", tenant_slug=tenant.slug, pk=dsr.pk)
    response = render(request, "policies/dsr_form.html", {"form": form}, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response


@tenant_permission_required(roles.VIEW_POLICIES)
@require_GET
def dsr_detail_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    dsr = _get(pk)
    return _detail(request, dsr)


def _detail(
    request: HttpRequest,
    dsr: DataSubjectRequest,
    *,
    extend_form: DsrExtendForm | None = None,
    reject_form: DsrRejectForm | None = None,
    handle_form: DsrHandleForm | None = None,
    status: int = 200,
) -> HttpResponse:
    can_manage = _can_manage(request)
    labels = _state_labels()
    notifications = [
        {**notice, "label": labels.get(notice["state"], notice["state"])}
        for notice in dsr.evidence.get("notifications") or []
    ]
    context = {
        "dsr": dsr,
        "deadline": dsr_deadline(dsr),
        "can_start": dsr_can_start(dsr),
        "timeline": dsr_timeline(dsr=dsr),
        "can_manage": can_manage,
        # The identifiers only to those who act on the request; readers see pseudonyms.
        "identifiers": _identifiers(dsr) if can_manage else None,
        "archive": dsr.evidence.get("archive"),
        "has_archive": dsr_has_archive(pk=dsr.pk),
        "erasure": dsr.evidence.get("erasure"),
        "notifications": notifications,
        "handleable": HANDLEABLE_STATES,
        "extend_form": extend_form or DsrExtendForm(),
        "reject_form": reject_form or DsrRejectForm(),
        "handle_form": handle_form,
    }
    response = render(request, "policies/dsr_detail.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _identifiers(dsr: DataSubjectRequest) -> dict[str, str]:
    from apps.policies.dsr import dsr_subject

    return dsr_subject(dsr).identifiers()


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_POST
def dsr_start_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    dsr = _get(pk)
    if dsr.kind == RequestKind.ERASURE and request.POST.get("confirm") != "on":
        messages.error(request, _("Confirm that this person's data is to be erased."))
        return redirect("policies:dsr-detail", tenant_slug=tenant_slug, pk=dsr.pk)
    try:
        dsr_start(tenant=request.tenant, dsr=dsr, actor=request.user, request=request)  # type: ignore[attr-defined]
    except (HubError, ValidationError) as exc:
        messages.error(request, str(exc.messages[0] if isinstance(exc, ValidationError) else exc))
    else:
        messages.success(request, _("Request started."))
    return redirect("policies:dsr-detail", tenant_slug=tenant_slug, pk=dsr.pk)


def _form_action(
    request: HttpRequest, tenant_slug: str, pk: str, form_class: Any, form_name: str, success: str, run: Any
) -> HttpResponse:
    """A request's action from a form on its page: the service call with the cleaned data, then back to the
    page; refused input or a service's refusal shows the page again with the form's errors (400)."""
    dsr = _get(pk)
    form = form_class(request.POST)
    if form.is_valid():
        try:
            run(dsr=dsr, tenant=request.tenant, actor=request.user, request=request, **form.cleaned_data)  # type: ignore[attr-defined]
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, success)
            return redirect("policies:dsr-detail", tenant_slug=tenant_slug, pk=dsr.pk)
    return _detail(request, dsr, status=400, **{form_name: form})


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_POST
def dsr_extend_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    return _form_action(
        request, tenant_slug, pk, DsrExtendForm, "extend_form", _("Deadline extended."), dsr_extend
    )


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_POST
def dsr_reject_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    return _form_action(
        request, tenant_slug, pk, DsrRejectForm, "reject_form", _("Request rejected."), dsr_reject
    )


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_POST
def dsr_handle_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    def handle(*, notice: Any, **kwargs: Any) -> Any:
        return dsr_notification_handle(notice_id=notice, **kwargs)

    return _form_action(
        request,
        tenant_slug,
        pk,
        DsrHandleForm,
        "handle_form",
        _("Vendor notification marked as handled."),
        handle,
    )


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_GET
def dsr_download_view(request: HttpRequest, tenant_slug: str, pk: str) -> HttpResponse:
    dsr = _get(pk)
    content = dsr_archive_download(tenant=request.tenant, dsr=dsr, actor=request.user, request=request)  # type: ignore[attr-defined]
    if content is None:
        raise Http404
    response = HttpResponse(content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="subject-access-{dsr.pk}.zip"'
    response["Cache-Control"] = "no-store"
    return response
