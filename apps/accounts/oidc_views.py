"""OpenID Connect pages: start a sign-in at a provider, and the one callback every provider returns to.

Thin: `services.oidc` keeps the pending login and talks to the provider; `services.sso` signs the user in.
Failures end on the clear `sso_error` page, audited, never a 500.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.accounts import selectors
from apps.accounts.models import IdentityProvider
from apps.accounts.services.oidc import (
    oidc_begin,
    oidc_complete,
    oidc_denied,
    oidc_pending_take,
    safe_after,
)
from apps.accounts.services.sso import SsoRefused
from apps.accounts.sso_pages import sso_error
from apps.observability.metrics import record_sso_sign_in
from connectors.oidc.client import OidcError, OidcReason

PROTOCOL = IdentityProvider.Protocol.OIDC.value
_ERROR_CODE = re.compile(r"[a-z_]{1,40}\Z")  # RFC 6749 error codes; anything else is not echoed


def start(request: HttpRequest, provider: IdentityProvider, next_url: str) -> HttpResponse:
    """Send the browser to the provider's authorization endpoint (see services.oidc.oidc_begin)."""
    try:
        url = oidc_begin(request=request, provider=provider, next_url=next_url)
    except OidcError as exc:
        oidc_denied(request=request, reason=exc.reason.value, provider=provider)
        record_sso_sign_in(protocol=PROTOCOL, outcome=exc.reason.value)
        return sso_error(
            request,
            _("Your identity provider cannot be reached right now. Try again later."),
            status=502,
            reference=exc.reason.value,
        )
    return redirect(url)


def _failed(request: HttpRequest, reference: str) -> HttpResponse:
    record_sso_sign_in(protocol=PROTOCOL, outcome=reference)
    return sso_error(
        request,
        _("Your identity provider's answer could not be verified, so you are not signed in. Start again."),
        status=400,
        reference=reference,
    )


@never_cache
@require_GET
def oidc_callback_view(request: HttpRequest) -> HttpResponse:
    """Finish a sign-in: check the state, exchange the code, verify the id_token, sign the user in."""
    pending = oidc_pending_take(request=request, state=request.GET.get("state", ""))
    if pending is None:
        oidc_denied(request=request, reason=OidcReason.STATE_MISMATCH.value, provider=None)
        record_sso_sign_in(protocol=PROTOCOL, outcome=OidcReason.STATE_MISMATCH.value)
        return sso_error(
            request,
            _("This sign-in has expired or was already used. Start the sign-in again."),
            status=400,
            reference=OidcReason.STATE_MISMATCH.value,
        )
    error = request.GET.get("error")
    code = request.GET.get("code", "")
    if error or not code:
        provider = selectors.identity_provider_get(pk=int(pending.get("provider") or 0))
        oidc_denied(request=request, reason=OidcReason.IDP_ERROR.value, provider=provider)
        record_sso_sign_in(protocol=PROTOCOL, outcome=OidcReason.IDP_ERROR.value)
        shown = error if error and _ERROR_CODE.match(error) else "invalid_response"
        message = (
            _("You cancelled the sign-in, or your identity provider refused it.")
            if shown == "access_denied"
            else _("Your identity provider did not sign you in.")
        )
        return sso_error(request, message, status=400, reference=shown)
    try:
        oidc_complete(request=request, pending=pending, code=code)
    except OidcError as exc:
        return _failed(request, exc.reason.value)
    except SsoRefused as refused:
        record_sso_sign_in(protocol=PROTOCOL, outcome=refused.reason.value)
        return sso_error(request, str(refused), status=403, reference=refused.reason.value)
    record_sso_sign_in(protocol=PROTOCOL, outcome="success")
    return redirect(safe_after(request, str(pending.get("next") or "")))
