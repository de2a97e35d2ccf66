"""Single sign-on pages shared by both protocols: start at a provider, start at a tenant, the failure page.

The protocol views live in `oidc_views` (authorization code flow with PKCE) and `saml_views` (SP-initiated
Web SSO, ACS, SP metadata); both end in `services.sso.sso_sign_in`.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.accounts import selectors
from apps.accounts.models import IdentityProvider
from apps.accounts.sso_pages import sso_error


def start(request: HttpRequest, provider: IdentityProvider, next_url: str) -> HttpResponse:
    """Send the browser to `provider` (its protocol's view builds the request)."""
    if not provider.is_active or not provider.tenant.is_active:
        return sso_error(request, _("This sign-in method is switched off. Ask your administrator."))
    if provider.protocol == IdentityProvider.Protocol.OIDC:
        from apps.accounts import oidc_views

        return oidc_views.start(request, provider, next_url)
    from apps.accounts import saml_views

    return saml_views.start(request, provider, next_url)


@never_cache
@require_GET
def sso_start_view(request: HttpRequest, provider_id: int) -> HttpResponse:
    from apps.accounts.views import safe_next

    provider = selectors.identity_provider_get(pk=provider_id)
    if provider is None:
        raise Http404
    return start(request, provider, safe_next(request))


@never_cache
@require_GET
def sso_tenant_view(request: HttpRequest, organisation: str) -> HttpResponse:
    """Sign in through the tenant's identity provider (where SSO enforcement and SSO_REQUIRED send people)."""
    from apps.accounts.views import safe_next

    provider = selectors.identity_provider_for_tenant(tenant_slug=organisation)
    if provider is None:
        return sso_error(
            request,
            _("This organisation has no single sign-on set up yet. Ask your administrator."),
            status=404,
        )
    return start(request, provider, safe_next(request))
