"""Reads of connections, and who may manage which (role, or a per-connection object permission)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.integrations.conf import connector_class
from apps.integrations.models import CONNECTION_PERM, Connection
from apps.tenants import roles
from apps.tenants.selectors import permitted_ids
from connectors.errors import ConnectorError
from connectors.http import HttpSession


def manages_all(*, user: Any, membership: Any) -> bool:
    """Tell whether the caller's role manages every connection of the tenant."""
    return roles.can(user, membership, roles.MANAGE_CONNECTIONS)


def connection_list(*, user: Any, membership: Any) -> QuerySet[Connection]:
    """The current tenant's connections the caller may manage (all with the role, else those granted).

    Call inside the tenant context; guardian rows are read from the control database first (one query).
    """
    queryset = Connection.objects.order_by("name", "id")
    if manages_all(user=user, membership=membership):
        return queryset
    return queryset.filter(pk__in=permitted_ids(user=user, perm=CONNECTION_PERM, model=Connection))


def may_list_connections(*, user: Any, membership: Any) -> bool:
    """The role, or an object permission on at least one connection, opens the connections area."""
    if manages_all(user=user, membership=membership):
        return True
    return membership is not None and bool(permitted_ids(user=user, perm=CONNECTION_PERM, model=Connection))


def connection_get(*, pk: Any) -> Connection:
    """One connection of the current tenant, or NotFound (another tenant's id does not exist here)."""
    connection = Connection.objects.filter(pk=pk).first()
    if connection is None:
        raise NotFound("Connection not found.")
    return connection


def may_manage(*, user: Any, membership: Any, connection: Connection) -> bool:
    if manages_all(user=user, membership=membership):
        return True
    if membership is None:
        return False
    return str(connection.pk) in permitted_ids(user=user, perm=CONNECTION_PERM, model=Connection)


def secrets_status(connection: Connection) -> dict[str, bool]:
    """Which of the connector's secret fields hold a value; shown instead of the values themselves."""
    cls = connector_class(connection.kind)
    stored = connection.secrets
    return {name: bool(stored.get(name)) for name in cls.sensitive_fields}


def connection_warnings(connection: Connection) -> list[str]:
    """Notices the connector raises for this configuration (e.g. an auth flow the vendor retires)."""
    cls = connector_class(connection.kind)
    try:
        return list(cls(connection.connector_config(), session=HttpSession()).warnings)
    except ConnectorError:
        return []


def may_grant(*, user: Any, membership: Any) -> bool:
    """Granting a member access to one connection is a people decision: it needs MANAGE_MEMBERS (admins,
    who must have a second factor), not the connector-manager role, so holding a connection's credentials
    never lets anyone hand that access on."""
    return roles.can(user, membership, roles.MANAGE_MEMBERS)


def connection_grantees(*, connection: Connection) -> list[Any]:
    """Users holding the per-connection permission on `connection`, by username (two control queries)."""
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import UserObjectPermission

    user_ids = UserObjectPermission.objects.filter(
        content_type=ContentType.objects.get_for_model(Connection),
        object_pk=str(connection.pk),
        permission__codename=CONNECTION_PERM.split(".", 1)[-1],
    ).values_list("user_id", flat=True)
    return list(get_user_model().objects.filter(pk__in=list(user_ids)).order_by("username"))


def connection_grant_candidates(*, tenant: Any, connection: Connection) -> QuerySet[Any]:
    """Members of `tenant` whose role does not already manage every connection, and not yet granted."""
    from django.contrib.auth import get_user_model

    from apps.tenants.models import Membership

    managing = [role for role, perms in roles.ROLE_PERMISSIONS.items() if roles.MANAGE_CONNECTIONS in perms]
    granted = [user.pk for user in connection_grantees(connection=connection)]
    member_ids = Membership.objects.filter(tenant=tenant).exclude(role__in=managing).values_list("user_id")
    return get_user_model().objects.filter(pk__in=member_ids).exclude(pk__in=granted).order_by("username")


# --- webhooks and the sync console ----------------------------------------------------------------------
def webhook_connection_find(*, connection_id: Any) -> tuple[Any, Connection] | None:
    """Find a connection by id alone, for a public webhook URL: (its active tenant, the connection) or None.

    Connections live in region databases with globally unique UUID keys, so each configured region is
    asked once (regions are few); the row only counts in its tenant's home region.
    """
    from django.conf import settings

    from apps.core.context import region_alias
    from apps.tenants.models import Tenant

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
    from datetime import timedelta

    from django.utils import timezone

    from apps.integrations import webhooks
    from apps.integrations.resilience import redis_client

    now = timezone.now()
    days = [webhooks.day_key(now - timedelta(days=n)) for n in range(webhooks.REJECTION_DAYS)]
    pipe = redis_client().pipeline()
    for connection in connections:
        for day in days:
            pipe.hgetall(webhooks.rejection_key(owner=webhooks.owner_key(connection), day=day))
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
