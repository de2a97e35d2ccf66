"""The hub's public origin, for URLs handed to platforms and vendors (webhooks, widget scripts, demos)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def public_base_url(request: HttpRequest | None = None) -> str:
    """HUB_CHANNELS_PUBLIC_URL, else the request's own origin, else http://localhost:8000 (`make run`)."""
    configured = str(getattr(settings, "HUB_CHANNELS_PUBLIC_URL", "") or "").rstrip("/")
    if configured:
        return configured
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return "http://localhost:8000"
