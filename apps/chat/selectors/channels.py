"""Reading channels and API keys (control database). Every read is scoped to one tenant: another tenant's id
does not exist here (NotFound), which the console and API turn into 404."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from apps.chat.models import ApiKey, Channel
from apps.core.errors import NotFound
from apps.tenants.models import Tenant


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def active_keys_q(prefix: str = "") -> Q:
    """Keys that authenticate now: not revoked and not expired (`prefix` for lookups through a relation)."""
    now = timezone.now()
    return Q(**{f"{prefix}revoked_at__isnull": True}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def channel_list(*, tenant: Tenant) -> QuerySet[Channel]:
    """The tenant's channels, each with `active_keys` (how many of its keys authenticate now)."""
    return (
        Channel.objects.filter(tenant=tenant)
        .annotate(active_keys=Count("api_keys", filter=active_keys_q("api_keys__")))
        .order_by("name", "id")
    )


def channel_get(*, tenant: Tenant, pk: Any) -> Channel:
    """One of the tenant's channels, or NotFound."""
    channel_id = _uuid(pk)
    channel = None
    if channel_id is not None:
        channel = Channel.objects.filter(tenant=tenant, pk=channel_id).select_related("tenant").first()
    if channel is None:
        raise NotFound("Channel not found.")
    return channel


def api_key_list(*, channel: Channel) -> QuerySet[ApiKey]:
    """A channel's keys, newest first, revoked and expired ones included (the console shows their state)."""
    return ApiKey.objects.filter(channel=channel).select_related("created_by").order_by("-created_at", "-id")


def api_key_get(*, tenant: Tenant, pk: Any) -> ApiKey:
    """One of the tenant's keys, or NotFound."""
    try:
        key_id = int(pk)
    except (TypeError, ValueError):
        key_id = None
    key = None
    if key_id is not None:
        key = (
            ApiKey.objects.filter(tenant=tenant, pk=key_id)
            .select_related("channel__tenant", "created_by")
            .first()
        )
    if key is None:
        raise NotFound("API key not found.")
    return key


def api_key_state(key: ApiKey) -> str:
    """`active`, `expiring` (still valid, but an expiry is set), `expired` or `revoked`."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None:
        return "expired" if key.expires_at <= timezone.now() else "expiring"
    return "active"
