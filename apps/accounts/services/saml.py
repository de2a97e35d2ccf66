"""SAML 2.0 for a tenant's identity provider: our SP, the IdP's metadata, the pending request, replay.

The protocol checks live in `connectors.saml` (pure). Here: the SP's entity id and ACS URL (from the hub's
public URL), the IdP metadata (pasted, or fetched through the guarded outbound session and cached in Redis),
the request we are waiting an answer for (bound to the browser by a short-lived signed cookie: see
`saml_views`), the assertion-id replay guard (Redis SET NX, shared by every web process) and the mapping of
a verified assertion to `SsoClaims`.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest
from django.urls import reverse

from apps.accounts.models import IdentityProvider
from apps.accounts.services.sso import SsoClaims, idp_session
from apps.core.outbound import LOOPBACK_HOSTS
from apps.core.public import public_base_url
from connectors.saml import SamlAssertion, SamlError, SamlReason, ServiceProvider
from connectors.saml.sp import CLOCK_SKEW_SECONDS, MAX_METADATA_BYTES

#: How long the IdP may take to answer our AuthnRequest (the pending-request cookie's lifetime).
PENDING_SECONDS = 600
PENDING_COOKIE = "hub_saml"
PENDING_SALT = "accounts.saml.pending"
#: A fetched metadata copy stays usable this long when a refresh fails (the IdP's URL is down).
STALE_METADATA_SECONDS = 7 * 86_400
#: A failed signature refetches the IdP's metadata at most this often (forged posts must not hammer the IdP).
REFRESH_INTERVAL_SECONDS = 60
#: Entra ID reports MFA in this attribute (…/claims/multipleauthn), not in the AuthnContextClassRef.
AUTH_METHODS_ATTRIBUTE = "http://schemas.microsoft.com/claims/authnmethodsreferences"


class SamlUnavailable(Exception):
    """A dependency (Redis for the replay guard, the IdP's metadata URL) is down: refuse, never accept."""


# --- our service provider ---------------------------------------------------------------------


def sp_entity_id(provider: IdentityProvider) -> str:
    """Our entity id for `provider`: the SP metadata URL (unique per IdP, so one tenant never answers
    for another)."""
    return public_base_url() + reverse("accounts:saml-metadata", args=[provider.pk])


def sp_acs_url(provider: IdentityProvider) -> str:
    return public_base_url() + reverse("accounts:saml-acs", args=[provider.pk])


def service_provider(provider: IdentityProvider, *, metadata_xml: str | None = None) -> ServiceProvider:
    """The SP for `provider`, trusting its IdP's current metadata (`metadata_xml=""`: SP metadata only)."""
    return ServiceProvider(
        entity_id=sp_entity_id(provider),
        acs_url=sp_acs_url(provider),
        idp_metadata_xml=idp_metadata(provider) if metadata_xml is None else metadata_xml,
        allow_sha1=settings.HUB_SAML_ALLOW_SHA1,
    )


# --- the IdP's metadata -------------------------------------------------------------------------


def _metadata_key(provider: IdentityProvider, kind: str) -> str:
    digest = hashlib.sha256(provider.saml_metadata_url.encode()).hexdigest()[:16]
    return f"saml:idp-metadata:{kind}:{provider.pk}:{digest}"


def idp_metadata_fetch(url: str) -> str:
    """GET the IdP's metadata through the guarded session (private addresses refused, https in production)."""
    session = idp_session()
    try:
        response = session.get(url, stream=True)
        body = response.raw.read(MAX_METADATA_BYTES + 1, decode_content=True)
    except Exception as exc:  # refused by the guard, DNS, TLS, timeout: all "unavailable"
        raise SamlUnavailable(f"IdP metadata could not be fetched ({type(exc).__name__})") from None
    finally:
        session.close()
    if response.status_code != 200 or len(body) > MAX_METADATA_BYTES:
        raise SamlUnavailable(f"IdP metadata fetch answered HTTP {response.status_code}")
    return bytes(body).decode("utf-8", "replace")


def idp_metadata(provider: IdentityProvider, *, refresh: bool = False) -> str:
    """The IdP's metadata XML: pasted XML wins; else the URL's, cached HUB_SAML_METADATA_CACHE_SECONDS.

    `refresh` skips the fresh copy (a signature failed: the IdP may have rotated its key). When the URL
    fails, the last good copy serves up to a week, so an IdP metadata outage does not lock everyone out.
    """
    if provider.saml_metadata_xml.strip():
        return provider.saml_metadata_xml
    if not provider.saml_metadata_url:
        raise SamlError(SamlReason.METADATA, "no IdP metadata configured")
    fresh_key, stale_key = _metadata_key(provider, "fresh"), _metadata_key(provider, "stale")
    if not refresh:
        cached = cache.get(fresh_key)
        if cached:
            return str(cached)
    try:
        xml = idp_metadata_fetch(provider.saml_metadata_url)
    except SamlUnavailable:
        stale = cache.get(stale_key)
        if stale:
            return str(stale)
        raise
    cache.set(fresh_key, xml, timeout=settings.HUB_SAML_METADATA_CACHE_SECONDS)
    cache.set(stale_key, xml, timeout=STALE_METADATA_SECONDS)
    return xml


# --- the pending request ------------------------------------------------------------------------


def pending_dump(*, provider: IdentityProvider, request_id: str, next_url: str) -> str:
    """The signed value of the pending-request cookie (tamper-proof; expiry checked on load)."""
    return signing.dumps({"p": provider.pk, "r": request_id, "n": next_url}, salt=PENDING_SALT)


def pending_load(*, value: str, provider: IdentityProvider) -> tuple[str, str] | None:
    """(request id, next URL) if `value` is our unexpired cookie for this very provider, else None."""
    try:
        data = signing.loads(value, salt=PENDING_SALT, max_age=PENDING_SECONDS)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("p") != provider.pk or not isinstance(data.get("r"), str):
        return None
    return data["r"], str(data.get("n") or "")


# --- verification -------------------------------------------------------------------------------


@functools.cache
def _redis() -> redis.Redis:
    from apps.core.deadlines import redis_options

    return redis.Redis.from_url(settings.REDIS_URL, **redis_options())


def assertion_replay_guard(*, provider: IdentityProvider, assertion: SamlAssertion) -> None:
    """Remember the assertion id until it expires (+ clock skew); raise SamlError(REPLAYED) if seen.

    Redis SET NX, so a replay to another web process is caught too; Redis down raises SamlUnavailable
    (refuse: accepting without the guard would let a captured assertion in twice).
    """
    ttl = max(1, int(assertion.not_on_or_after - time.time()) + CLOCK_SKEW_SECONDS)
    digest = hashlib.sha256(f"{provider.pk}:{assertion.issuer}:{assertion.assertion_id}".encode()).hexdigest()
    key = f"{settings.CACHES['default']['KEY_PREFIX']}:saml:assertion:{digest}"
    try:
        fresh = _redis().set(key, 1, nx=True, ex=ttl)
    except redis.RedisError:
        raise SamlUnavailable("the replay guard (Redis) is unavailable") from None
    if not fresh:
        raise SamlError(SamlReason.REPLAYED)


def response_verify(*, provider: IdentityProvider, saml_response: str, request_id: str) -> SamlAssertion:
    """Verify the IdP's answer to our request and guard against its replay.

    A bad signature from URL metadata retries once with freshly fetched metadata (IdPs rotate keys and
    publish the new certificate there), at most once a minute per provider.
    """
    try:
        assertion = service_provider(provider).process_response(saml_response, request_id=request_id)
    except SamlError as error:
        if error.reason is not SamlReason.BAD_SIGNATURE or provider.saml_metadata_xml.strip():
            raise
        if not cache.add(_metadata_key(provider, "refreshed"), 1, timeout=REFRESH_INTERVAL_SECONDS):
            raise
        fresh = idp_metadata(provider, refresh=True)
        sp = service_provider(provider, metadata_xml=fresh)
        assertion = sp.process_response(saml_response, request_id=request_id)
    assertion_replay_guard(provider=provider, assertion=assertion)
    return assertion


def claims_from(*, provider: IdentityProvider, assertion: SamlAssertion) -> SsoClaims:
    """SsoClaims from a verified assertion: subject = NameID (persistent or e-mail), groups from the
    provider's groups attribute, auth_methods = the AuthnContextClassRefs (+ Entra ID's auth methods)."""
    from connectors.saml.sp import FAMILY_NAME_ATTRIBUTES, GIVEN_NAME_ATTRIBUTES

    extra: dict[str, Any] = {"name_id_format": assertion.name_id_format}
    return SsoClaims(
        subject=assertion.name_id,
        email=assertion.email,
        email_verified=True,  # a SAML IdP vouches for the addresses it releases; the domain check still holds
        given_name=assertion.first(GIVEN_NAME_ATTRIBUTES),
        family_name=assertion.first(FAMILY_NAME_ATTRIBUTES),
        groups=assertion.values(provider.groups_claim or "groups")[:200],
        auth_methods=(*assertion.authn_context_class_refs, *assertion.values(AUTH_METHODS_ATTRIBUTE)),
        session_index=assertion.session_index,
        extra=extra,
    )


def pending_cookie_secure(request: HttpRequest) -> bool:
    """Whether the pending-request cookie can be `SameSite=None; Secure` (else Lax, same-site IdPs only).

    Over https, yes; on plain http only for localhost/loopback, which browsers treat as a secure context
    and accept Secure cookies from (the dev server, the browser tests).
    """
    loopback = urlsplit(f"//{request.get_host()}").hostname in LOOPBACK_HOSTS
    return bool(request.is_secure() or settings.SESSION_COOKIE_SECURE or loopback)
