"""OpenID Connect sign-in, the Django side: the pending login in the session, the client built from the
tenant's provider (the only place its secret is decrypted), the provider documents in the shared cache.

The protocol lives in `connectors.oidc.client`; what happens once the id_token is verified is
`services.sso.sso_sign_in`, shared with SAML.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from apps.accounts.models import IdentityProvider
from apps.accounts.services import record_security_event
from apps.accounts.services.sso import SsoClaims, SsoResult, idp_session, sso_sign_in
from apps.core.public import public_base_url
from connectors.http import HttpSession
from connectors.oidc.client import OidcClient, OidcError, OidcReason, claims_fields

#: Session key of the logins started, not yet finished: {state: {provider, nonce, verifier, next, expires}}.
PENDING_KEY = "hub_oidc_pending"
PENDING_SECONDS = 600
MAX_PENDING = 5  # several tabs may each start a sign-in; more than this is noise (the oldest go)


class CacheStore:
    """Discovery documents and key sets in Django's cache (Redis), shared by every web process, with a TTL."""

    prefix = "sso:oidc:"

    def get(self, key: str) -> dict[str, Any] | None:
        value = cache.get(self.prefix + key)
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        cache.set(self.prefix + key, value, timeout=settings.HUB_SSO_OIDC_CACHE_SECONDS)

    def claim(self, key: str, seconds: int) -> bool:
        return bool(cache.add(self.prefix + "claim:" + key, 1, timeout=seconds))


def oidc_session() -> HttpSession:
    """The guarded session for an OpenID provider (one retry: discovery and JWKS reads are idempotent)."""
    return idp_session(max_retries=1)


def oidc_redirect_uri(request: HttpRequest | None = None) -> str:
    """The one callback URL every provider sends users back to (the provider comes from the state)."""
    return public_base_url(request) + reverse("accounts:oidc-callback")


def oidc_client(*, provider: IdentityProvider, request: HttpRequest | None = None) -> OidcClient:
    """A client for `provider`; the client secret is unsealed here and nowhere else."""
    secret = bytes(provider.oidc_client_secret or b"").decode()
    return OidcClient(
        session=oidc_session(),
        discovery_url=provider.oidc_discovery_url,
        client_id=provider.oidc_client_id,
        client_secret=secret,
        redirect_uri=oidc_redirect_uri(request),
        scopes=provider.oidc_scopes,
        store=CacheStore(),
    )


def _pending(request: HttpRequest) -> dict[str, dict[str, Any]]:
    now = time.time()
    stored = request.session.get(PENDING_KEY)
    if not isinstance(stored, dict):
        return {}
    return {s: p for s, p in stored.items() if isinstance(p, dict) and p.get("expires", 0) > now}


def oidc_begin(*, request: HttpRequest, provider: IdentityProvider, next_url: str) -> str:
    """Start a sign-in at `provider`: remember state, nonce, verifier and where to go after; return the
    authorization URL to send the browser to. Raises OidcError when the provider cannot be reached."""
    auth = oidc_client(provider=provider, request=request).authorization_request()
    pending = _pending(request)
    pending[auth.state] = {
        "provider": provider.pk,
        "nonce": auth.nonce,
        "verifier": auth.code_verifier,
        "next": next_url,
        "expires": time.time() + PENDING_SECONDS,
    }
    oldest_first = sorted(pending.items(), key=lambda item: item[1]["expires"])
    request.session[PENDING_KEY] = dict(oldest_first[-MAX_PENDING:])
    return auth.url


def oidc_pending_take(*, request: HttpRequest, state: str) -> dict[str, Any] | None:
    """Take (once) the pending login `state` names; None for an unknown, used or expired state."""
    pending = _pending(request)
    found = pending.pop(state, None) if state else None
    request.session[PENDING_KEY] = pending
    return found


def safe_after(request: HttpRequest, next_url: str) -> str:
    """Where to go after signing in: the stored `next` if it stays on this site, else the default."""
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def oidc_denied(*, request: HttpRequest, reason: str, provider: IdentityProvider | None) -> None:
    """Audit a sign-in the protocol refused (bad state, IdP error, a token that does not verify)."""
    details: dict[str, Any] = {"protocol": IdentityProvider.Protocol.OIDC.value}
    if provider is not None:
        details.update(tenant_id=provider.tenant_id, provider_id=provider.pk)
    record_security_event("sso_login", user=None, request=request, outcome="denied", reason=reason, **details)


def oidc_complete(*, request: HttpRequest, pending: dict[str, Any], code: str) -> SsoResult:
    """Exchange the code, verify the id_token and sign the user in (services.sso); raises OidcError (audited
    here) or SsoRefused (audited by sso_sign_in)."""
    provider = (
        IdentityProvider.objects.select_related("tenant")
        .filter(pk=int(pending.get("provider") or 0), protocol=IdentityProvider.Protocol.OIDC)
        .first()
    )
    if provider is None:
        oidc_denied(request=request, reason=OidcReason.STATE_MISMATCH.value, provider=None)
        raise OidcError(OidcReason.STATE_MISMATCH, "The identity provider of this sign-in no longer exists")
    try:
        claims = oidc_client(provider=provider, request=request).complete(
            code=code, code_verifier=str(pending.get("verifier", "")), nonce=str(pending.get("nonce", ""))
        )
    except OidcError as exc:
        oidc_denied(request=request, reason=exc.reason.value, provider=provider)
        raise
    fields = claims_fields(claims, groups_claim=provider.groups_claim)
    return sso_sign_in(request=request, provider=provider, claims=SsoClaims(**fields))
