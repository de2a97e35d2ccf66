"""Reads of connections, and who may manage which (role, or a per-connection object permission)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.integrations.conf import connector_class, connector_registry
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

    from apps.integrations.resilience import redis_client
    from apps.integrations.services import webhooks

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


#: How many recent runs of a stream the console's error rate covers.
ERROR_RATE_RUNS = 20


@dataclass(frozen=True, slots=True)
class StreamOverview:
    """One stream of one connection as the sync console shows it."""

    stream: str
    state: Any  # StreamState | None (never synced: no state row, no schedule yet)
    last_run: Any  # SyncRun | None
    recent_finished: int
    recent_failed: int
    records: int
    lag: timedelta | None

    @property
    def error_rate(self) -> float | None:
        """Failed share of the last finished runs (of the last ERROR_RATE_RUNS), None before any."""
        return self.recent_failed / self.recent_finished if self.recent_finished else None


@dataclass(frozen=True, slots=True)
class ConnectionOverview:
    connection: Connection
    label: str
    breaker: Any  # resilience.BreakerState
    streams: list[StreamOverview]
    rejected: dict[str, int]
    config_error: bool

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def readable_streams(connection: Connection) -> list[str] | None:
    """The streams the console offers for `connection`, or None when its configuration is broken."""
    try:
        connector = connector_class(connection.kind)(connection.connector_config(), session=HttpSession())
    except ConnectorError:
        return None
    return [stream.name for stream in connector.streams() if stream.readable]


def sync_overview(*, now: datetime | None = None) -> list[ConnectionOverview]:
    """Every connection of the current tenant with its streams' sync status, in a fixed number of queries.

    Four queries whatever the number of connections and streams (connections, stream states, the last
    ERROR_RATE_RUNS runs per stream through a window function, record counts), plus one Redis call per
    connection for its breaker and one pipelined round trip for the webhook rejection counters.
    """
    from django.db.models import Count, F, Window
    from django.db.models.functions import RowNumber
    from django.utils import timezone

    from apps.integrations.models import RunStatus, StreamState, SyncedRecord, SyncRun
    from apps.integrations.resilience import breaker_for

    now = now or timezone.now()
    connections = list(Connection.objects.order_by("name", "id"))
    ids = [c.pk for c in connections]
    states = {(s.connection_id, s.stream): s for s in StreamState.objects.filter(connection_id__in=ids)}
    recent = (
        SyncRun.objects.filter(connection_id__in=ids)
        .annotate(
            rn=Window(
                RowNumber(),
                partition_by=[F("connection_id"), F("stream")],
                order_by=[F("created_at").desc(), F("id").desc()],
            )
        )
        .filter(rn__lte=ERROR_RATE_RUNS)
        .defer("error")
    )
    last: dict[tuple[Any, str], Any] = {}
    finished: dict[tuple[Any, str], list[int]] = {}
    for run in recent:
        key = (run.connection_id, run.stream)
        if run.rn == 1:
            last[key] = run
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            counts = finished.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += run.status == RunStatus.FAILED
    records = {
        (row["connection_id"], row["stream"]): row["n"]
        for row in SyncedRecord.objects.filter(connection_id__in=ids, deleted=False)
        .values("connection_id", "stream")
        .annotate(n=Count("id"))
    }
    rejected = webhook_rejections(connections=connections)
    labels = {kind: cls.label for kind, cls in connector_registry().items()}
    result = []
    for connection in connections:
        names = readable_streams(connection)
        rows = []
        for stream in names or []:
            key = (connection.pk, stream)
            state = states.get(key)
            done, failed = finished.get(key, [0, 0])
            success = state.last_success_at if state is not None else None
            rows.append(
                StreamOverview(
                    stream=stream,
                    state=state,
                    last_run=last.get(key),
                    recent_finished=done,
                    recent_failed=failed,
                    records=records.get(key, 0),
                    lag=now - success if success is not None else None,
                )
            )
        result.append(
            ConnectionOverview(
                connection=connection,
                label=labels.get(connection.kind, connection.kind),
                breaker=breaker_for(connection).state(),
                streams=rows,
                rejected=rejected.get(connection.pk, {}),
                config_error=names is None,
            )
        )
    return result


def sync_run_list(*, connection: Connection, stream: str) -> QuerySet[Any]:
    """A stream's runs, newest first, with their attempt counts (one query per page)."""
    from django.db.models import Count

    from apps.integrations.models import SyncRun

    return (
        SyncRun.objects.filter(connection=connection, stream=stream)
        .annotate(attempt_count=Count("attempts"))
        .order_by("-created_at", "-id")
    )


def sync_run_get(*, pk: Any) -> Any:
    """One run of the current tenant with its connection, or NotFound."""
    from apps.integrations.models import SyncRun

    run = SyncRun.objects.select_related("connection").filter(pk=pk).first()
    if run is None:
        raise NotFound("Sync run not found.")
    return run


def stream_state_find(*, connection: Connection, stream: str) -> Any:
    """The stream's state row, or None before its first sync (reading never creates it)."""
    from apps.integrations.models import StreamState

    return StreamState.objects.filter(connection=connection, stream=stream).first()
