"""Per-user language and time zone, and the mandatory second factor.

Both run after django-otp's OTPMiddleware (so `request.user.is_verified()` exists).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.i18n import set_language

from apps.accounts import selectors, services

# Where a signed-in user who still owes a second factor may go.
TWO_FACTOR_EXEMPT_URL_NAMES = frozenset(
    {
        "accounts:logout",
        "accounts:otp-verify",
        "accounts:twofactor-enroll",
        "accounts:sso-start",
        "accounts:sso-tenant",
        "accounts:oidc-callback",
        "accounts:saml-acs",
        "accounts:saml-metadata",
        "set_language",
        "javascript-catalog",
        "healthz",
        "readyz",
        "metrics",
    }
)


class UserPreferencesMiddleware:
    """Activate the signed-in user's language and time zone; LocaleMiddleware decides for everyone else.

    A signed-in user who posts to Django's `set_language` view also has the choice saved on their account,
    so the switcher and the profile page agree.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        previous_language = translation.get_language()
        language = user.language if user.language in dict(settings.LANGUAGES) else None
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        try:
            timezone.activate(zoneinfo.ZoneInfo(user.time_zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        try:
            response = self.get_response(request)
            if language:
                # LocaleMiddleware keeps a header already set; the view may have switched (set_language).
                response.headers.setdefault("Content-Language", translation.get_language())
            return response
        finally:
            # Leave the thread as LocaleMiddleware set it, so nothing leaks past this request.
            timezone.deactivate()
            if language:
                translation.activate(previous_language)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if view_func is not set_language or request.method != "POST":
            return None
        user = request.user
        language = request.POST.get("language", "")
        if user.is_authenticated and language in dict(settings.LANGUAGES):
            services.user_update_preferences(user=user, language=language)
            translation.activate(language)
        return None


class TwoFactorMiddleware:
    """Hold back signed-in users who owe a second factor.

    A user with a confirmed device who has not verified this session goes to the OTP step; a user who
    needs two-factor authentication (see `selectors.user_requires_2fa`) but has no device goes to
    enrollment. The API answers 403 JSON instead of redirecting.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or selectors.second_factor_done(request=request):
            return self.get_response(request)
        if self._exempt(request):
            return self.get_response(request)
        if selectors.user_has_confirmed_device(user=user):
            return self._refuse(request, "accounts:otp-verify", _("Enter your two-factor code first."))
        if selectors.user_requires_2fa(user=user):
            return self._refuse(
                request, "accounts:twofactor-enroll", _("Set up two-factor authentication first.")
            )
        return self.get_response(request)

    @staticmethod
    def _exempt(request: HttpRequest) -> bool:
        static_url = settings.STATIC_URL or "/static/"
        if request.path_info.startswith("/" + static_url.lstrip("/")):
            return True
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        return match.view_name in TWO_FACTOR_EXEMPT_URL_NAMES

    @staticmethod
    def _refuse(request: HttpRequest, url_name: str, message: str) -> HttpResponse:
        if request.path_info.startswith("/api/"):
            return JsonResponse({"detail": message, "code": "two_factor_required"}, status=403)
        url = reverse(url_name)
        if request.method == "GET":
            url += "?" + urlencode({"next": request.get_full_path()})
        if request.headers.get("HX-Request"):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = url
            return response
        return HttpResponseRedirect(url)
