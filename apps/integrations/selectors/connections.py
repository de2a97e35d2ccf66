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
