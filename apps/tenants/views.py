"""Console pages for tenants (operators), tenant settings, members and invitations."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.errors import Conflict, HubError
from apps.core.forms import add_service_errors
from apps.tenants import roles
from apps.tenants.decorators import operator_required, tenant_permission_required
from apps.tenants.filters import MembershipFilter, TenantFilter
from apps.tenants.forms import InviteForm, MembershipForm, TenantCreateForm, TenantSettingsForm
from apps.tenants.models import Invitation, Membership, Role
from apps.tenants.selectors import tenant_list
from apps.tenants.services import (
    invitation_create,
    invitation_revoke,
    membership_change_role,
    membership_remove,
    tenant_create,
    tenant_update,
)

PAGE_SIZE = 25


@login_required
@operator_required
@require_http_methods(["GET"])
def tenant_list_view(request: HttpRequest) -> HttpResponse:
    filterset = TenantFilter(request.GET, queryset=tenant_list().order_by("name"))
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "tenants/tenant_list.html", {"filter": filterset, "page_obj": page})


@login_required
@operator_required
@require_http_methods(["GET", "POST"])
def tenant_create_view(request: HttpRequest) -> HttpResponse:
    form = TenantCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenant = tenant_create(**form.cleaned_data)
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Tenant “%(name)s” created.") % {"name": tenant.name})
            return redirect("console:tenant-home", tenant_slug=tenant.slug)
    return render(request, "tenants/tenant_form.html", {"form": form}, status=400 if form.errors else 200)


@tenant_permission_required(roles.MANAGE_SETTINGS)
@require_http_methods(["GET", "POST"])
def tenant_settings_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    original_region = tenant.home_region
    form = TenantSettingsForm(request.POST or None, instance=tenant)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        tenant.home_region = original_region  # the service decides whether the region may change
        try:
            tenant_update(
                tenant=tenant,
                name=data["name"],
                default_locale=data["default_locale"],
                enabled_locales=data["enabled_locales"],
                home_region=data["home_region"],
                require_2fa=data["require_2fa"],
            )
        except Conflict as exc:
            tenant.refresh_from_db()
            form.add_error("home_region", str(exc))
        except (HubError, ValidationError) as exc:
            tenant.refresh_from_db()
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Settings saved."))
            return redirect("tenants:settings", tenant_slug=tenant.slug)
    return render(request, "tenants/settings.html", {"form": form}, status=400 if form.errors else 200)


@tenant_permission_required(roles.VIEW_CONSOLE)
@require_http_methods(["GET"])
def member_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    queryset = Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")
    filterset = MembershipFilter(request.GET, queryset=queryset)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    can_manage = roles.can(request.user, request.membership, roles.MANAGE_MEMBERS)  # type: ignore[attr-defined]
    invitations = (
        Invitation.objects.filter(tenant=tenant, accepted_at=None, revoked_at=None).order_by("-created_at")[
            :50
        ]
        if can_manage
        else []
    )
    context = {
        "filter": filterset,
        "page_obj": page,
        "can_manage": can_manage,
        "invitations": invitations,
        "invite_form": InviteForm(),
    }
    template = "tenants/_member_rows.html" if request.htmx else "tenants/member_list.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET", "POST"])
def member_invite_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invitation_create(
                tenant=tenant,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
                base_url=request.build_absolute_uri("/"),
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]}
            )
            return redirect("tenants:members", tenant_slug=tenant.slug)
    return render(request, "tenants/invite.html", {"form": form}, status=400 if form.errors else 200)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET", "POST"])
def member_edit_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, tenant=tenant)
    initial = {"role": membership.role, "locales": membership.locales, "regions": membership.regions}
    form = MembershipForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            membership_change_role(
                membership=membership,
                role=form.cleaned_data["role"],
                locales=form.cleaned_data["locales"],
                regions=form.cleaned_data["regions"],
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, _("Role of %(user)s updated.") % {"user": membership.user.get_username()}
            )
            return redirect("tenants:members", tenant_slug=tenant.slug)
    context = {"form": form, "membership": membership, "roles": Role}
    return render(request, "tenants/member_edit.html", context, status=400 if form.errors else 200)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_POST
def member_remove_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, tenant=tenant)
    try:
        membership_remove(membership=membership)
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("tenants:member-edit", tenant_slug=tenant.slug, pk=pk)
    messages.success(request, _("%(user)s was removed.") % {"user": membership.user.get_username()})
    return redirect("tenants:members", tenant_slug=tenant.slug)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_POST
def invitation_revoke_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    invitation = get_object_or_404(Invitation, pk=pk, tenant=tenant)
    invitation_revoke(invitation=invitation)
    messages.success(request, _("Invitation to %(email)s revoked.") % {"email": invitation.email})
    return redirect("tenants:members", tenant_slug=tenant.slug)
