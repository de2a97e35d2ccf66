"""Connections API: the console's rules over HTTP. 404 outside the caller's tenant, 403 without access."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.errors import NotFound as ServiceNotFound
from apps.core.errors import ValidationFailed
from apps.integrations.api.serializers import (
    ConnectionCreateSerializer,
    ConnectionSerializer,
    ConnectionTestSerializer,
    ConnectionUpdateSerializer,
    nest_errors,
)
from apps.integrations.conf import connector_registry
from apps.integrations.models import Connection
from apps.integrations.selectors.connections import (
    connection_get,
    connection_list,
    manages_all,
    may_list_connections,
    may_manage,
)
from apps.integrations.services.connections import (
    connection_create,
    connection_delete,
    connection_set_enabled,
    connection_test,
    connection_update,
)
from apps.tenants.api_base import TENANT_PARAM, TenantScopedView
from apps.tenants.api_base import error_responses as _errors

ID_PARAM = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Connection id.")


@contextmanager
def connection_errors(kind: str | None, data: dict[str, Any]) -> Iterator[None]:
    """Report a service's refusal as 400, with per-setting errors nested where the request had them."""
    try:
        yield
    except ValidationFailed as exc:
        cls = connector_registry().get(kind or "")
        schema = cls.config_schema if cls is not None else ()
        detail = nest_errors(
            exc.errors or {"non_field_errors": [str(exc)]},
            settings={f.name for f in schema if not f.secret} | set(data.get("settings") or {}),
            credentials={f.name for f in schema if f.secret} | set(data.get("credentials") or {}),
        )
        raise serializers.ValidationError(detail) from None


class ConnectionScopedView(TenantScopedView):
    """A tenant-scoped endpoint about connections (the tenant is resolved by TenantScopedView)."""

    # The default django-filter backend builds a queryset from the model's default manager, which needs a
    # tenant context; connections are few per tenant and need no query filters.
    filter_backends: list[Any] = []

    def get_connection(self) -> Connection:
        """The connection if the caller may manage it: 404 when not this tenant's, 403 when not theirs."""
        try:
            connection = connection_get(pk=self.kwargs["id"])
        except ServiceNotFound:
            raise NotFound from None
        if not may_manage(user=self.request.user, membership=self.membership, connection=connection):
            raise PermissionDenied(_("You may not manage this connection."))
        return connection

    def require_manager(self) -> None:
        if not manages_all(user=self.request.user, membership=self.membership):
            raise PermissionDenied(_("Your role in this tenant does not allow this."))


@extend_schema(tags=["connections"], parameters=[TENANT_PARAM])
class ConnectionListView(ListModelMixin, ConnectionScopedView):
    """Connections the caller manages; the connector-manager role creates them."""

    serializer_class = ConnectionSerializer

    def get_queryset(self) -> QuerySet[Connection]:
        if getattr(self, "swagger_fake_view", False):
            return Connection.all_tenants.none()
        return connection_list(user=self.request.user, membership=self.membership)

    @extend_schema(
        summary="List connections",
        responses={200: ConnectionSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        if not may_list_connections(user=request.user, membership=self.membership):
            raise PermissionDenied(_("Your role in this tenant does not allow this."))
        return self.list(request)

    @extend_schema(
        summary="Create a connection",
        description="Settings and credentials are validated against the connector's schema; credentials "
        "are stored encrypted and never returned.",
        request=ConnectionCreateSerializer,
        responses={201: ConnectionSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        self.require_manager()
        serializer = ConnectionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with connection_errors(data["kind"], data):
            connection = connection_create(
                tenant=self.tenant, **data, actor=request.user, request=request._request
            )
        return Response(ConnectionSerializer(connection).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["connections"], parameters=[TENANT_PARAM, ID_PARAM])
class ConnectionDetailView(ConnectionScopedView):
    """One connection: its managers read, change and (with the role) delete it."""

    serializer_class = ConnectionSerializer

    @extend_schema(
        summary="Get a connection", responses={200: ConnectionSerializer, **_errors(401, 403, 404)}
    )
    def get(self, request: Request, slug: str, id: str) -> Response:
        return Response(ConnectionSerializer(self.get_connection()).data)

    @extend_schema(
        summary="Change a connection",
        description="Only the fields sent change. A blank credential keeps the stored one.",
        request=ConnectionUpdateSerializer,
        responses={200: ConnectionSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, slug: str, id: str) -> Response:
        connection = self.get_connection()
        serializer = ConnectionUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        enabled = data.pop("enabled", None)
        with connection_errors(connection.kind, data):
            if data:
                connection = connection_update(
                    connection=connection,
                    tenant=self.tenant,
                    **data,
                    actor=request.user,
                    request=request._request,
                )
            if enabled is not None:
                connection = connection_set_enabled(
                    connection=connection,
                    tenant=self.tenant,
                    enabled=enabled,
                    actor=request.user,
                    request=request._request,
                )
        return Response(ConnectionSerializer(connection).data)

    @extend_schema(summary="Delete a connection", responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request: Request, slug: str, id: str) -> Response:
        connection = self.get_connection()
        self.require_manager()
        connection_delete(
            connection=connection, tenant=self.tenant, actor=request.user, request=request._request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["connections"], parameters=[TENANT_PARAM, ID_PARAM])
class ConnectionTestView(ConnectionScopedView):
    """Check a connection against its vendor now."""

    serializer_class = ConnectionTestSerializer

    @extend_schema(
        summary="Test a connection",
        description="Logs in to the vendor and makes a cheap call per stream. A failed test is still a 200: "
        "`ok` is false and `message` carries the vendor's error in plain words.",
        request=None,
        responses={200: ConnectionTestSerializer, **_errors(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: str) -> Response:
        connection = self.get_connection()
        result = connection_test(
            connection=connection, tenant=self.tenant, actor=request.user, request=request._request
        )
        body = {
            "ok": result.ok,
            "message": result.message,
            "warnings": result.warnings,
            "connection": ConnectionSerializer(connection).data,
        }
        return Response(body)
