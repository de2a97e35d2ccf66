"""SAML 2.0 Web SSO pages: start (AuthnRequest out), the ACS (Response in), our SP metadata.

The IdP answers with a cross-site POST to the ACS. Our session cookie is SameSite=Lax, so that POST arrives
without it: the pending request (request id, provider, next URL) is kept in a short-lived (10 min) signed
cookie instead, scoped to the SSO paths and SameSite=None; Secure (over https, and on http://localhost, which
browsers accept Secure cookies from; Lax on other plain-http hosts, where only a same-site IdP works). It
binds the answer to the browser that asked: an attacker's valid assertion posted into a victim's browser
(login CSRF), or an answer meant for another tenant's IdP, finds no matching request. Chosen over an
intermediate same-site page that re-posts the SAMLResponse: one round trip less, no script in between.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.accounts import selectors
from apps.accounts.models import IdentityProvider
from apps.accounts.services import record_security_event
from apps.accounts.services import saml as saml_services
from apps.accounts.services.sso import SsoRefused, sso_sign_in
from apps.accounts.sso_pages import sso_error
from apps.observability.metrics import record_sso_sign_in
from connectors.saml import MAX_RESPONSE_BYTES, SamlError, SamlReason

PROTOCOL = IdentityProvider.Protocol.SAML
PENDING_PATH = "/accounts/sso/"  # the start and the ACS paths (accounts/urls.py) are below it


def _saml_provider(provider_id: int) -> IdentityProvider:
    provider = selectors.identity_provider_get(pk=provider_id)
    if provider is None or provider.protocol != PROTOCOL:
        raise Http404
    return provider


def _denied(request: HttpRequest, provider: IdentityProvider, reason: str) -> None:
    record_sso_sign_in(protocol=PROTOCOL, outcome=reason)
    record_security_event(
        "sso_login",
        user=None,
        request=request,
        outcome="denied",
        reason=reason,
        tenant_id=provider.tenant_id,
        provider_id=provider.pk,
        protocol=PROTOCOL,
    )


def start(request: HttpRequest, provider: IdentityProvider, next_url: str) -> HttpResponse:
    """Send the browser to the IdP with an AuthnRequest; remember its id for the answer."""
    try:
        url, request_id = saml_services.service_provider(provider).authn_request(relay_state="")
    except (SamlError, saml_services.SamlUnavailable):
        _denied(request, provider, "metadata")
        return sso_error(
            request,
            _("Single sign-on is not reachable right now: the identity provider's settings are unreadable."),
            status=503,
            reference="saml_metadata",
        )
    response = HttpResponseRedirect(url)
    secure = saml_services.pending_cookie_secure(request)
    response.set_cookie(
        saml_services.PENDING_COOKIE,
        saml_services.pending_dump(provider=provider, request_id=request_id, next_url=next_url),
        max_age=saml_services.PENDING_SECONDS,
        path=PENDING_PATH,
        secure=secure,
        httponly=True,
        samesite="None" if secure else "Lax",
    )
    return response


def _pending_clear(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Drop the pending-request cookie (same attributes as set, so the browser accepts the deletion)."""
    secure = saml_services.pending_cookie_secure(request)
    response.delete_cookie(
        saml_services.PENDING_COOKIE, path=PENDING_PATH, samesite="None" if secure else "Lax"
    )
    return response


def _refused(request: HttpRequest, provider: IdentityProvider, reason: SamlReason) -> HttpResponse:
    _denied(request, provider, reason.value)
    response = sso_error(
        request,
        _("The answer of your identity provider could not be accepted. Please sign in again."),
        status=413 if reason is SamlReason.OVERSIZE else 400,
        reference=f"saml_{reason.value}",
    )
    return _pending_clear(request, response)


@csrf_exempt  # the IdP posts here; the pending-request cookie and the signed assertion stand in for CSRF
@never_cache
@require_POST
def acs_view(request: HttpRequest, provider_id: int) -> HttpResponse:
    """The assertion consumer service: verify the IdP's answer to our request and sign the user in."""
    provider = _saml_provider(provider_id)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_RESPONSE_BYTES * 2:  # refused before Django parses (and buffers) the form
        return _refused(request, provider, SamlReason.OVERSIZE)
    pending = saml_services.pending_load(
        value=request.COOKIES.get(saml_services.PENDING_COOKIE, ""), provider=provider
    )
    if pending is None:
        return _refused(request, provider, SamlReason.UNSOLICITED)
    request_id, next_url = pending
    saml_response = request.POST.get("SAMLResponse", "")
    if not saml_response:
        return _refused(request, provider, SamlReason.MALFORMED)
    try:
        assertion = saml_services.response_verify(
            provider=provider, saml_response=saml_response, request_id=request_id
        )
    except SamlError as error:
        return _refused(request, provider, error.reason)
    except saml_services.SamlUnavailable:
        _denied(request, provider, "unavailable")
        return sso_error(
            request,
            _("Single sign-on is briefly unavailable. Please try again in a minute."),
            status=503,
            reference="saml_unavailable",
        )
    claims = saml_services.claims_from(provider=provider, assertion=assertion)
    try:
        sso_sign_in(request=request, provider=provider, claims=claims)
    except SsoRefused as refused:  # audited by sso_sign_in
        record_sso_sign_in(protocol=PROTOCOL, outcome=refused.reason.value)
        page = sso_error(request, str(refused), status=403, reference=refused.reason.value)
        return _pending_clear(request, page)
    record_sso_sign_in(protocol=PROTOCOL, outcome="success")
    return _pending_clear(request, HttpResponseRedirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL)))


@never_cache
@require_GET
def metadata_view(request: HttpRequest, provider_id: int) -> HttpResponse:
    """Our SP metadata for this identity provider (public: the IdP administrator or the IdP fetches it)."""
    provider = _saml_provider(provider_id)
    xml = saml_services.service_provider(provider, metadata_xml="").metadata()
    return HttpResponse(xml, content_type="application/samlmetadata+xml")
