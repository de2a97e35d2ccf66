"""Console pages: the tenant's data policy (explained in plain words, editable) and subject erasure."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.errors import HubError
from apps.core.forms import add_service_errors
from apps.policies.forms import ErasureForm, PolicyForm, PresetForm
from apps.policies.models import RETENTION_FIELDS
from apps.policies.selectors import policy_explain, policy_get
from apps.policies.services import erase_subject, policy_apply_preset, policy_update
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required


def _initial(request: HttpRequest) -> dict[str, object]:
    policy = policy_get(tenant=request.tenant)  # type: ignore[attr-defined]
    fields = ("allowed_regions", "redact_transcripts", *RETENTION_FIELDS.values())
    return {name: getattr(policy, name) for name in fields}


@tenant_permission_required(roles.VIEW_POLICIES)
@require_http_methods(["GET", "POST"])
def policy_detail_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Show the policy and what it means (compliance officers read it); admins change it on the same page."""
    tenant = request.tenant  # type: ignore[attr-defined]
    can_edit = roles.can(request.user, request.membership, roles.MANAGE_SETTINGS)  # type: ignore[attr-defined]
    if request.method == "POST" and not can_edit:
        raise PermissionDenied
    form = PolicyForm(request.POST or None, initial=_initial(request), home_region=tenant.region_code)
    if request.method == "POST" and form.is_valid():
        try:
            policy_update(tenant=tenant, values=form.cleaned_data, actor=request.user, request=request)
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Data policy saved."))
            return redirect("policies:detail", tenant_slug=tenant.slug)
    policy = policy_get(tenant=tenant)
    context = {
        "form": form,
        "policy": policy,
        "explanation": policy_explain(tenant=tenant, policy=policy),
        "can_edit": can_edit,
    }
    return render(request, "policies/detail.html", context, status=400 if form.errors else 200)


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_POST
def policy_preset_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    form = PresetForm(request.POST)
    if form.is_valid():
        policy_apply_preset(
            tenant=tenant, preset=form.cleaned_data["preset"], actor=request.user, request=request
        )
        messages.success(request, _("Preset applied."))
    else:
        messages.error(request, _("Unknown preset."))
    return redirect("policies:detail", tenant_slug=tenant.slug)


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_http_methods(["GET", "POST"])
def erasure_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Erase one person's data; the report is rendered in the reply (the identifier is never stored)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = ErasureForm(request.POST or None)
    report = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            report = erase_subject(
                tenant=tenant,
                email=data["email"] or None,
                phone=data["phone"] or None,
                external_id=data["external_id"] or None,
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            form = ErasureForm()
    context = {"form": form, "report": report}
    response = render(request, "policies/erasure.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response
