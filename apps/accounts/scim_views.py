"""Console pages for SCIM provisioning (/t/<slug>/sso/scim/): the tenant's SCIM tokens and what its IdP
has provisioned. Tenant admins only; the API itself is apps/accounts/api/scim.py."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from apps.accounts.models import ScimGroup, ScimToken, ScimUser
from apps.accounts.scim import selectors as scim_selectors
from apps.accounts.services.scim import scim_token_create, scim_token_revoke
from apps.core.confirm import Confirmation, confirmation_required
from apps.core.errors import HubError
from apps.core.forms import add_service_errors
from apps.core.public import public_base_url
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 25


class ScimTokenForm(forms.Form):
    EXPIRY_CHOICES = [
        ("90", gettext_lazy("In 90 days")),
        ("365", gettext_lazy("In a year")),
        ("never", gettext_lazy("Never")),
    ]

    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=100,
        help_text=gettext_lazy("Which identity provider uses the token, e.g. “Okta”."),
    )
    expires = forms.ChoiceField(label=gettext_lazy("Expires"), choices=EXPIRY_CHOICES, initial="365")

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data["expires"]
        return None if days == "never" else timezone.now() + timedelta(days=int(days))


def _context(request: HttpRequest) -> dict[str, object]:
    return {"base_url": f"{public_base_url(request)}/scim/v2", "now": timezone.now()}


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET", "POST"])
def scim_console_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The SCIM base URL, the tokens (a new one's secret is shown once, in the reply), provisioned users."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = ScimTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            token, plaintext = scim_token_create(
                tenant=tenant,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            context = {**_context(request), "token": token, "plaintext": plaintext}
            response = render(request, "accounts/scim_token_created.html", context)
            response["Cache-Control"] = "no-store"
            return response
    users = ScimUser.objects.filter(tenant=tenant).select_related("user").order_by("user_name", "pk")
    context = {
        **_context(request),
        "form": form,
        "tokens": scim_selectors.scim_tokens(tenant=tenant)[:50],
        "page_obj": Paginator(users, PAGE_SIZE).get_page(request.GET.get("page")),
        "group_count": ScimGroup.objects.filter(tenant=tenant).count(),
    }
    return render(request, "accounts/scim.html", context, status=400 if form.errors else 200)


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET"])
def scim_groups_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The groups the IdP pushed, with their member counts (role mappings match their names)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    groups = (
        ScimGroup.objects.filter(tenant=tenant)
        .annotate(member_count=Count("members"))
        .order_by("display_name")
    )
    page = Paginator(groups, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "accounts/scim_groups.html", {"page_obj": page})


@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_http_methods(["GET", "POST"])
def scim_token_revoke_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    token = get_object_or_404(ScimToken, pk=pk, tenant=tenant)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Revoke SCIM token"),
            object_name=_("Token “%(name)s”") % {"name": token.name},
            consequence=_(
                "The identity provider using this token can no longer provision users. This cannot be undone."
            ),
            button=_("Revoke token"),
            cancel_url=reverse("accounts:scim", args=[tenant.slug]),
        ),
    )
    if page is not None:
        return page
    scim_token_revoke(token=token, actor=request.user, request=request)
    messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("accounts:scim", tenant_slug=tenant.slug)
