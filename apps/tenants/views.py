"""Console pages for tenants (operators), tenant settings, members and invitations."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from apps.core.confirm import Confirmation, confirmation_required
from apps.core.errors import Conflict, HubError
from apps.core.forms import add_service_errors
from apps.tenants import roles
from apps.tenants.decorators import operator_required, tenant_permission_required
from apps.tenants.filters import MembershipFilter, TenantFilter
from apps.tenants.forms import InviteForm, MembershipForm, TenantCreateForm, TenantSettingsForm
from apps.tenants.models import Invitation, ManagementToken, Membership, Role
from apps.tenants.selectors import tenant_list
from apps.tenants.services import (
    invitation_create,
    invitation_revoke,
    management_token_create,
    management_token_revoke,
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
            tenant = tenant_create(**form.cleaned_data, actor=request.user, request=request)
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
                actor=request.user,
                request=request,
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
                request=request,
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
                actor=request.user,
                request=request,
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
@require_http_methods(["GET", "POST"])
def member_remove_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, tenant=tenant)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Remove member"),
            object_name=membership.user.get_username(),
            consequence=_(
                "They lose access to this tenant at once. Their account stays; invite them again to undo."
            ),
            button=_("Remove member"),
            cancel_url=reverse("tenants:member-edit", args=[tenant.slug, membership.pk]),
        ),
    )
    if page is not None:
        return page
    try:
        membership_remove(membership=membership, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("tenants:member-edit", tenant_slug=tenant.slug, pk=pk)
    messages.success(request, _("%(user)s was removed.") % {"user": membership.user.get_username()})
    return redirect("tenants:members", tenant_slug=tenant.slug)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET", "POST"])
def invitation_revoke_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    invitation = get_object_or_404(Invitation, pk=pk, tenant=tenant)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Revoke invitation"),
            object_name=invitation.email,
            consequence=_("The invitation link stops working; send a new invitation to undo."),
            button=_("Revoke invitation"),
            cancel_url=reverse("tenants:members", args=[tenant.slug]),
        ),
    )
    if page is not None:
        return page
    invitation_revoke(invitation=invitation, actor=request.user, request=request)
    messages.success(request, _("Invitation to %(email)s revoked.") % {"email": invitation.email})
    return redirect("tenants:members", tenant_slug=tenant.slug)


# --- management API tokens -------------------------------------------------------------------------------
class TokenCreateForm(forms.Form):
    EXPIRY_CHOICES = [
        ("30", gettext_lazy("In 30 days")),
        ("90", gettext_lazy("In 90 days")),
        ("365", gettext_lazy("In a year")),
        ("never", gettext_lazy("Never")),
    ]

    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=100,
        help_text=gettext_lazy("What uses the token, e.g. “provisioning script”."),
    )
    expires = forms.ChoiceField(label=gettext_lazy("Expires"), choices=EXPIRY_CHOICES, initial="90")

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data["expires"]
        return None if days == "never" else timezone.now() + timedelta(days=int(days))


def _token_page(request: HttpRequest, form: TokenCreateForm, status: int = 200) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    tokens = (
        ManagementToken.objects.filter(tenant=tenant).select_related("user").order_by("-created_at", "-pk")
    )
    page = Paginator(tokens, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page_obj": page, "now": timezone.now()}
    return render(request, "tenants/token_list.html", context, status=status)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET", "POST"])
def token_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """List the tenant's API tokens and issue new ones; a new token's secret is shown once, in the reply."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            token, plaintext = management_token_create(
                tenant=tenant,
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            # Rendered, not redirected: keeping the secret for a redirect would mean storing it somewhere.
            response = render(request, "tenants/token_created.html", {"token": token, "plaintext": plaintext})
            response["Cache-Control"] = "no-store"
            return response
    return _token_page(request, form, status=400 if form.errors else 200)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET", "POST"])
def token_revoke_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    token = get_object_or_404(ManagementToken, pk=pk, tenant=tenant)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Revoke API token"),
            object_name=_("Token “%(name)s”") % {"name": token.name},
            consequence=_(
                "Every management API call with this token is refused from now on. This cannot be undone."
            ),
            button=_("Revoke token"),
            cancel_url=reverse("tenants:api-tokens", args=[tenant.slug]),
        ),
    )
    if page is not None:
        return page
    management_token_revoke(token=token, actor=request.user, request=request)
    messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("tenants:api-tokens", tenant_slug=tenant.slug)
