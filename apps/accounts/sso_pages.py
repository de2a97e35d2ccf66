"""The single sign-on failure page, for the shared and both protocol views (own module: no import cycle)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def sso_error(request: HttpRequest, message: str, *, status: int = 403, reference: str = "") -> HttpResponse:
    """The clear page for a refused or failed single sign-on: what happened, never the protocol detail.

    `reference` is a short code (e.g. the refusal reason) that an administrator can find in the audit log.
    """
    return render(
        request, "accounts/sso_error.html", {"message": message, "reference": reference}, status=status
    )
