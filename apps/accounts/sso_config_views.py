"""Console pages of a tenant's single sign-on setup, under /t/<slug>/sso/ (admins: `manage_settings`).

The overview shows providers, domains, the ordered role mappings, enforcement and what is still missing;
the forms below it are thin: services/sso_config.py validates and audits. Platform operators additionally
designate the break-glass admin and may mark a domain verified by hand.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import selectors
from apps.accounts.forms import (
    BreakGlassForm,
    IdentityProviderForm,
    RoleMappingForm,
    RoleMappingPreviewForm,
    SsoDomainForm,
    SsoEnforcementForm,
)
from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services import sso_config
from apps.accounts.services.sso import role_grant
from apps.core.confirm import Confirmation, confirmation_required
from apps.core.errors import HubError
from apps.core.forms import add_service_errors
from apps.core.public import public_base_url
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required
from apps.tenants.models import Role

manage = tenant_permission_required(roles.MANAGE_SETTINGS)


def _is_operator(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_authenticated and user.is_staff and user.is_active)


def _provider(request: HttpRequest, pk: Any) -> IdentityProvider:
    found = selectors.provider_get(tenant=request.tenant, pk=pk)  # type: ignore[attr-defined]
    if found is None:
        raise Http404
    return found


def _domain(request: HttpRequest, pk: Any) -> SsoDomain:
    found = selectors.domain_get(tenant=request.tenant, pk=pk)  # type: ignore[attr-defined]
    if found is None:
        raise Http404
    return found


def _mapping(request: HttpRequest, pk: Any) -> RoleMapping:
    found = selectors.mapping_get(tenant=request.tenant, pk=pk)  # type: ignore[attr-defined]
    if found is None:
        raise Http404
    return found


def _to_overview(tenant_slug: str, anchor: str = "") -> HttpResponse:
    url = reverse("sso-config:overview", kwargs={"tenant_slug": tenant_slug})
    return redirect(f"{url}#{anchor}" if anchor else url)


def sp_values(request: HttpRequest, provider: IdentityProvider | None, protocol: str) -> dict[str, str]:
    """What the admin must enter at the IdP: our redirect URI, or our SP entity ID, ACS and metadata URLs."""
    base = public_base_url(request)
    if protocol == IdentityProvider.Protocol.OIDC:
        return {"redirect_uri": f"{base}/accounts/sso/oidc/callback/"}
    if provider is None:
        return {}
    metadata = f"{base}/accounts/sso/{provider.pk}/saml/metadata/"
    return {
        "entity_id": metadata,
        "acs_url": f"{base}/accounts/sso/{provider.pk}/saml/acs/",
        "metadata_url": metadata,
    }


@manage
@require_http_methods(["GET"])
def overview_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Providers, domains with their DNS records, role mappings, enforcement and what is missing."""
    tenant = request.tenant  # type: ignore[attr-defined]
    providers = list(selectors.provider_list(tenant=tenant))
    domains = [(d, *sso_config.domain_challenge(d)) for d in selectors.domain_list(tenant=tenant)]
    readiness = selectors.sso_readiness(tenant=tenant)
    context = {
        "providers": providers,
        "domains": domains,
        "mappings": list(selectors.mapping_list(tenant=tenant)),
        "readiness": readiness,
        "enforcement_form": SsoEnforcementForm(initial={"sso_enforced": tenant.sso_enforced}),
        "preview_form": RoleMappingPreviewForm(providers=providers),
        "is_operator": _is_operator(request),
        "break_glass_form": BreakGlassForm(
            admins=selectors.admin_memberships(tenant=tenant),
            initial={"user": readiness.break_glass.user_id if readiness.break_glass else None},
        )
        if _is_operator(request)
        else None,
    }
    return render(request, "accounts/sso/overview.html", context)


@manage
@require_http_methods(["GET", "POST"])
def provider_edit_view(request: HttpRequest, tenant_slug: str, pk: Any = None) -> HttpResponse:
    """Create (no pk; ?protocol=oidc|saml) or change an identity provider."""
    tenant = request.tenant  # type: ignore[attr-defined]
    provider = _provider(request, pk) if pk is not None else None
    protocol = provider.protocol if provider else request.GET.get("protocol", "oidc")
    if protocol not in IdentityProvider.Protocol.values:
        raise Http404
    form = IdentityProviderForm(
        request.POST or None,
        protocol=protocol,
        has_secret=bool(provider and provider.oidc_client_secret is not None),
        initial=IdentityProviderForm.initial_of(provider) if provider else None,
    )
    if request.method == "POST" and form.is_valid():
        try:
            if provider is None:
                provider = sso_config.provider_create(
                    tenant=tenant, data=form.provider_data(), actor=request.user, request=request
                )
            else:
                provider = sso_config.provider_update(
                    provider=provider, data=form.provider_data(), actor=request.user, request=request
                )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Identity provider “%(name)s” saved.") % {"name": provider.name})
            return redirect("sso-config:provider-edit", tenant_slug=tenant_slug, pk=provider.pk)
    context = {
        "form": form,
        "provider": provider,
        "protocol": protocol,
        "protocol_label": IdentityProvider.Protocol(protocol).label,
        "sp": sp_values(request, provider, protocol),
    }
    return render(request, "accounts/sso/provider_form.html", context, status=400 if form.errors else 200)


@manage
@require_POST
def provider_check_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Fetch the discovery document or metadata now and say what is wrong."""
    provider = _provider(request, pk)
    result = sso_config.provider_check(provider=provider)
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("sso-config:provider-edit", tenant_slug=tenant_slug, pk=provider.pk)


@manage
@require_http_methods(["GET", "POST"])
def provider_delete_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    provider = _provider(request, pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Delete identity provider"),
            object_name=provider.name,
            consequence=_(
                "Its domains and the links of users to it are deleted too; those users cannot sign in "
                "through it any more. Their accounts stay. This cannot be undone."
            ),
            button=_("Delete identity provider"),
            cancel_url=reverse("sso-config:provider-edit", args=[tenant_slug, provider.pk]),
        ),
    )
    if page is not None:
        return page
    try:
        sso_config.provider_delete(provider=provider, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("sso-config:provider-edit", tenant_slug=tenant_slug, pk=provider.pk)
    messages.success(request, _("Identity provider “%(name)s” deleted.") % {"name": provider.name})
    return _to_overview(tenant_slug)


@manage
@require_http_methods(["GET", "POST"])
def domain_add_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    providers = list(selectors.provider_list(tenant=tenant))
    form = SsoDomainForm(request.POST or None, providers=providers)
    if request.method == "POST" and form.is_valid():
        provider = selectors.provider_get(tenant=tenant, pk=form.cleaned_data["identity_provider"])
        try:
            if provider is None:
                raise Http404
            domain = sso_config.domain_add(
                tenant=tenant,
                provider=provider,
                domain=form.cleaned_data["domain"],
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                _("Domain %(domain)s added: create the DNS record below.") % {"domain": domain.domain},
            )
            return redirect("sso-config:domain-detail", tenant_slug=tenant_slug, pk=domain.pk)
    context = {"form": form, "has_providers": bool(providers)}
    return render(request, "accounts/sso/domain_form.html", context, status=400 if form.errors else 200)


@manage
@require_http_methods(["GET"])
def domain_detail_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """The DNS TXT record to create, and the verify button."""
    domain = _domain(request, pk)
    name, value = sso_config.domain_challenge(domain)
    context = {
        "domain": domain,
        "record_name": name,
        "record_value": value,
        "is_operator": _is_operator(request),
    }
    return render(request, "accounts/sso/domain_detail.html", context)


@manage
@require_POST
def domain_verify_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    domain = _domain(request, pk)
    result = sso_config.domain_verify(domain=domain, actor=request.user, request=request)
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("sso-config:domain-detail", tenant_slug=tenant_slug, pk=domain.pk)


@manage
@require_POST
def domain_mark_verified_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Platform operators: mark verified without DNS (audited)."""
    domain = _domain(request, pk)  # another tenant's: 404 first
    if not _is_operator(request):
        raise PermissionDenied
    try:
        sso_config.domain_mark_verified(domain=domain, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Domain %(domain)s marked verified.") % {"domain": domain.domain})
    return redirect("sso-config:domain-detail", tenant_slug=tenant_slug, pk=domain.pk)


@manage
@require_http_methods(["GET", "POST"])
def domain_delete_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    domain = _domain(request, pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Remove domain"),
            object_name=domain.domain,
            consequence=_(
                "Users of this domain are no longer sent to the identity provider from the login page, and "
                "no new accounts are created for it."
            ),
            button=_("Remove domain"),
            cancel_url=reverse("sso-config:domain-detail", args=[tenant_slug, domain.pk]),
        ),
    )
    if page is not None:
        return page
    try:
        sso_config.domain_delete(domain=domain, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("sso-config:domain-detail", tenant_slug=tenant_slug, pk=domain.pk)
    messages.success(request, _("Domain %(domain)s removed.") % {"domain": domain.domain})
    return _to_overview(tenant_slug, "domains")


@manage
@require_http_methods(["GET", "POST"])
def mapping_edit_view(request: HttpRequest, tenant_slug: str, pk: Any = None) -> HttpResponse:
    """Create (no pk) or change a group → role mapping."""
    tenant = request.tenant  # type: ignore[attr-defined]
    mapping = _mapping(request, pk) if pk is not None else None
    form = RoleMappingForm(
        request.POST or None, initial=RoleMappingForm.initial_of(mapping) if mapping else None
    )
    if request.method == "POST" and form.is_valid():
        try:
            if mapping is None:
                mapping = sso_config.mapping_create(
                    tenant=tenant, data=form.mapping_data(), actor=request.user, request=request
                )
            else:
                mapping = sso_config.mapping_update(
                    mapping=mapping, data=form.mapping_data(), actor=request.user, request=request
                )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Mapping of group “%(group)s” saved.") % {"group": mapping.group})
            return _to_overview(tenant_slug, "mappings")
    context = {"form": form, "mapping": mapping}
    return render(request, "accounts/sso/mapping_form.html", context, status=400 if form.errors else 200)


@manage
@require_http_methods(["GET", "POST"])
def mapping_delete_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    mapping = _mapping(request, pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Delete role mapping"),
            object_name=str(mapping),
            consequence=_(
                "Members who had their role through this group get the next matching mapping's role, the "
                "default role or no access at their next sign-in."
            ),
            button=_("Delete role mapping"),
            cancel_url=reverse("sso-config:mapping-edit", args=[tenant_slug, mapping.pk]),
        ),
    )
    if page is not None:
        return page
    sso_config.mapping_delete(mapping=mapping, actor=request.user, request=request)
    messages.success(request, _("Mapping of group “%(group)s” deleted.") % {"group": mapping.group})
    return _to_overview(tenant_slug, "mappings")


@manage
@require_POST
def mapping_move_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    mapping = _mapping(request, pk)
    direction = request.POST.get("direction")
    if direction in ("up", "down"):
        sso_config.mapping_move(
            mapping=mapping, offset=-1 if direction == "up" else 1, actor=request.user, request=request
        )
    else:
        messages.error(request, _("Choose up or down."))
    return _to_overview(tenant_slug, "mappings")


@manage
@require_http_methods(["GET"])
def mapping_preview_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Which role a set of groups gets: the same rule the sign-in applies (first match, else default)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    providers = list(selectors.provider_list(tenant=tenant))
    form = RoleMappingPreviewForm(request.GET or None, providers=providers)
    grant = None
    if form.is_valid():
        provider = selectors.provider_get(tenant=tenant, pk=form.cleaned_data["identity_provider"])
        grant = role_grant(
            tenant=tenant, groups=form.group_set(), default_role=provider.default_role if provider else ""
        )
    context = {
        "form": form,
        "checked": form.is_bound and form.is_valid(),
        "grant": grant,
        "role_label": Role(grant[0]).label if grant else "",
    }
    return render(request, "accounts/sso/mapping_preview.html", context, status=400 if form.errors else 200)


@manage
@require_POST
def enforcement_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    form = SsoEnforcementForm(request.POST)
    form.is_valid()  # two booleans: always valid
    try:
        sso_config.enforcement_set(
            tenant=tenant,
            enforced=form.cleaned_data["sso_enforced"],
            confirm_without_break_glass=form.cleaned_data["confirm_without_break_glass"],
            actor=request.user,
            request=request,
        )
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("Single sign-on is now enforced.") if tenant.sso_enforced else _("Single sign-on is optional."),
        )
    return _to_overview(tenant_slug, "enforcement")


@manage
@require_POST
def break_glass_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Platform operators designate (or clear) the tenant's break-glass admin."""
    if not _is_operator(request):
        raise PermissionDenied
    tenant = request.tenant  # type: ignore[attr-defined]
    form = BreakGlassForm(request.POST, admins=selectors.admin_memberships(tenant=tenant))
    if not form.is_valid():
        messages.error(request, _("Choose an admin of this tenant."))
        return _to_overview(tenant_slug, "break-glass")
    try:
        chosen = sso_config.break_glass_set(
            tenant=tenant, user_id=form.cleaned_data["user"], actor=request.user, request=request
        )
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("%(user)s is the break-glass admin.") % {"user": chosen.user.get_username()}
            if chosen
            else _("No break-glass admin is designated."),
        )
    return _to_overview(tenant_slug, "break-glass")
