"""Single sign-on tests: an identity provider of tenant A with a verified domain, and a way to sign a test
client in through `sso_sign_in` with claims (the protocol adapters have their own end-to-end tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.test import Client, RequestFactory
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.accounts.models import IdentityProvider, SsoDomain
from apps.accounts.services.sso import SsoClaims, SsoResult, sso_sign_in
from apps.tenants.models import Tenant

ACME_DOMAIN = "acme.example"

SsoLogin = Callable[..., SsoResult]


def provider_for(
    tenant: Tenant, *, domain: str, name: str = "Company IdP", **fields: Any
) -> IdentityProvider:
    """An active OIDC provider of `tenant` with `domain` verified for it."""
    provider = IdentityProvider.objects.create(
        tenant=tenant,
        name=name,
        protocol=fields.pop("protocol", IdentityProvider.Protocol.OIDC),
        oidc_discovery_url="https://idp.example/.well-known/openid-configuration",
        oidc_client_id="hub",
        **fields,
    )
    SsoDomain.objects.create(
        tenant=tenant,
        identity_provider=provider,
        domain=domain,
        verification_token="t-" + domain,
        verified_at=timezone.now(),
    )
    return provider


@pytest.fixture
def idp_a(tenant_a: Tenant) -> IdentityProvider:
    """Tenant A's IdP; acme.example is verified for it; users with no mapped group are refused."""
    return provider_for(tenant_a, domain=ACME_DOMAIN)


@pytest.fixture
def idp_b(tenant_b: Tenant) -> IdentityProvider:
    """Tenant B's IdP for globex.example (a viewer by default)."""
    return provider_for(tenant_b, domain="globex.example", default_role="viewer")


def _new_session() -> SessionBase:
    engine = import_string(settings.SESSION_ENGINE + ".SessionStore")
    session: SessionBase = engine()
    return session


@pytest.fixture
def sso_login() -> SsoLogin:
    """Run `sso_sign_in(provider, claims)` as a browser's callback would; with `client`, that client carries
    the resulting session afterwards."""

    def run(provider: IdentityProvider, sso_claims: SsoClaims, *, client: Client | None = None) -> SsoResult:
        request = RequestFactory().get("/accounts/sso/callback/")
        request.session = _new_session()
        request.user = AnonymousUser()
        result = sso_sign_in(request=request, provider=provider, claims=sso_claims)
        request.session.save()
        if client is not None:
            client.cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key or ""
        return result

    return run
