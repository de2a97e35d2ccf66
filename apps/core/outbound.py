"""The guarded outbound session's settings in one place, for every tenant-set URL (vendors, IdPs, LLMs).

HUB_CONNECTOR_ALLOW_HOSTS (private hosts let through; loopback outside production when unset),
HUB_CONNECTOR_CA_BUNDLE (extra trust) and HUB_OUTBOUND_REQUIRE_HTTPS apply alike to connectors and identity
providers, so no caller can forget one of them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from connectors.http import HttpSession, make_session

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def outbound_allow_hosts() -> tuple[str, ...]:
    """Hosts the SSRF guard lets through although private: loopback outside production unless configured."""
    configured = settings.HUB_CONNECTOR_ALLOW_HOSTS
    if configured is None:
        return () if settings.HUB_ENV == "production" else LOOPBACK_HOSTS
    return tuple(configured)


def guarded_session(**options: Any) -> HttpSession:
    """A guarded session (every hop checked) with the allow-list, trust and https rule from settings."""
    options.setdefault("ca_bundle", settings.HUB_CONNECTOR_CA_BUNDLE or None)
    return make_session(
        allow_hosts=outbound_allow_hosts(), require_https=settings.HUB_OUTBOUND_REQUIRE_HTTPS, **options
    )
