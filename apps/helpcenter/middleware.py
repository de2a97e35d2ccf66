"""Custom domains: a request for a host an operator configured (HelpCenterDomain) gets the help center's
URLs only; the hub's own hosts (HUB_HELPCENTER_HUB_HOSTS) are never looked up, so the console and the chat
API pay nothing for this; a lookup survives a Redis outage (the control database answers). Django's
ALLOWED_HOSTS check runs first (request.get_host()): see docs/helpcenter.md for what the ingress and
ALLOWED_HOSTS need."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port

from apps.core.deadlines import optional_cache

HOST_URLCONF = "apps.helpcenter.host_urls"


class HelpCenterHostMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.hub_hosts = frozenset(h.strip("[]").lower() for h in settings.HUB_HELPCENTER_HUB_HOSTS if h)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            host, _port = split_domain_port(request.get_host())
        except DisallowedHost:
            return self.get_response(request)  # CommonMiddleware answers 400 for it
        host = host.strip("[]").lower()
        if host and host not in self.hub_hosts:
            from apps.helpcenter.selectors import domain_lookup

            # The cache only saves the lookup: while Redis is down the control database answers, so a host
            # that is not listed in HUB_HELPCENTER_HUB_HOSTS (the console's, say) keeps working.
            with optional_cache("cache"):
                found = domain_lookup(host=host)
            if found is not None:
                request.urlconf = HOST_URLCONF
                request.helpcenter_host = found  # type: ignore[attr-defined]
        return self.get_response(request)
