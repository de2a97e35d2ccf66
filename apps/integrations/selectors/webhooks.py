"""Reads for inbound webhooks: the connection a public URL names, and the refused deliveries it counts.

The Redis keys of the rejection counters are built here; services/webhooks.py counts under them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.core.context import region_alias
from apps.integrations.models import Connection
from apps.integrations.resilience import redis_client
from apps.tenants.models import Tenant

#: Rejections are kept per day, for the last week.
REJECTION_DAYS = 7


# --- Redis keys --------------------------------------------------------------------------------------------
def key_prefix() -> str:
    """Under the cache prefix, so concurrent test runs (HUB_TEST_RUN) never see each other's keys."""
    return f"{settings.CACHES['default']['KEY_PREFIX']}:webhooks"


def owner_key(connection: Connection) -> str:
    return f"{connection.tenant_id}:{connection.pk}"


def day_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d")


def rejection_key(*, owner: str, day: str) -> str:
    return f"{key_prefix()}:rejected:{owner}:{day}"


# --- reads -------------------------------------------------------------------------------------------------
def webhook_connection_find(*, connection_id: Any) -> tuple[Any, Connection] | None:
    """Find a connection by id alone, for a public webhook URL: (its active tenant, the connection) or None.

    Connections live in region databases with globally unique UUID keys, so each configured region is
    asked once (regions are few); the row only counts in its tenant's home region.
    """
    for code in settings.HUB_REGIONS:
        alias = region_alias(code)
        connection = Connection.all_tenants.using(alias).filter(pk=connection_id).first()
        if connection is None:
            continue
        tenant = Tenant.objects.select_related("home_region").filter(pk=connection.tenant_id).first()
        if tenant is None or not tenant.is_active or tenant.home_region.db_alias != alias:
            return None
        return tenant, connection
    return None


def webhook_rejections(*, connections: list[Connection]) -> dict[Any, dict[str, int]]:
    """Refused webhook deliveries of the last week per connection id and reason (one Redis round trip)."""
    now = timezone.now()
    days = [day_key(now - timedelta(days=n)) for n in range(REJECTION_DAYS)]
    pipe = redis_client().pipeline()
    for connection in connections:
        for day in days:
            pipe.hgetall(rejection_key(owner=owner_key(connection), day=day))
    replies = iter(pipe.execute())
    counts: dict[Any, dict[str, int]] = {}
    for connection in connections:
        totals: dict[str, int] = {}
        for _day in days:
            for reason, count in next(replies).items():
                name = reason.decode() if isinstance(reason, bytes) else str(reason)
                totals[name] = totals.get(name, 0) + int(count)
        counts[connection.pk] = totals
    return counts
