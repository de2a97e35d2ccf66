"""Handoff routes, business hours and the route preview over the management API: the console's rules.
404 outside the caller's tenant, 403 without `manage_channels` (admins); every change audited by the
services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.chat.api.routing_serializers import (
    BusinessHoursInputSerializer,
    BusinessHoursSerializer,
    HandoffRouteSerializer,
    RouteInputSerializer,
    RouteMoveSerializer,
    RoutePreviewInputSerializer,
    RoutePreviewSerializer,
)
from apps.chat.models import BusinessHours, HandoffRoute
from apps.chat.selectors.channels import channel_get
from apps.chat.selectors.handoffs import hours_get, hours_list, route_get, route_list
from apps.chat.services.routes import (
    hours_create,
    hours_delete,
    hours_update,
    route_create,
    route_delete,
    route_move,
    route_update,
)
from apps.chat.services.routing import RoutePreview, RouteQuery, preview_instant, route_preview
from apps.core.errors import NotFound as ServiceNotFound
from apps.tenants import roles
from apps.tenants.api_base import TENANT_PARAM, TenantScopedView, service_errors
from apps.tenants.api_base import error_responses as _errors

T = TypeVar("T")

ROUTE_PARAM = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Route id.")
HOURS_PARAM = OpenApiParameter(
    "id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Business hours id."
)


class RoutingScopedView(TenantScopedView):
    """A `/tenants/{slug}/...` endpoint about handoff routing: every one needs `manage_channels`."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.require(roles.MANAGE_CHANNELS)

    def get_route(self) -> HandoffRoute:
        return self._found(route_get)

    def get_hours(self) -> BusinessHours:
        return self._found(hours_get)

    def _found(self, getter: Callable[..., T]) -> T:
        """The tenant's row named by the URL's `id`; another tenant's or none: 404."""
        try:
            return getter(tenant=self.tenant, pk=self.kwargs["id"])
        except ServiceNotFound:
            raise NotFound from None


def _route_out(route: HandoffRoute) -> dict[str, Any]:
    return dict(HandoffRouteSerializer(route).data)


@extend_schema(tags=["handoff routing"], parameters=[TENANT_PARAM])
class RouteListView(ListModelMixin, RoutingScopedView):
    """A tenant's handoff routes, in the order they are tried."""

    serializer_class = HandoffRouteSerializer

    def get_queryset(self) -> QuerySet[HandoffRoute]:
        if getattr(self, "swagger_fake_view", False):
            return HandoffRoute.objects.none()
        return route_list(tenant=self.tenant)

    @extend_schema(
        summary="List handoff routes",
        responses={200: HandoffRouteSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Create a handoff route",
        description="`name` and `connection_id` are required. Conditions are lists; an empty list matches "
        "anything, and every non-empty one must match. Connections must be the tenant's ticketing "
        "connections; regions, locales, intents and channel kinds must be known.",
        request=RouteInputSerializer,
        responses={201: HandoffRouteSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(RouteInputSerializer)
        with service_errors():
            route = route_create(tenant=self.tenant, data=data, **self.writer())
        return Response(_route_out(route), status=status.HTTP_201_CREATED)


@extend_schema(tags=["handoff routing"], parameters=[TENANT_PARAM, ROUTE_PARAM])
class RouteDetailView(RoutingScopedView):
    """One handoff route: read, change, delete."""

    serializer_class = HandoffRouteSerializer

    @extend_schema(
        summary="Get a handoff route", responses={200: HandoffRouteSerializer, **_errors(401, 403, 404)}
    )
    def get(self, request: Request, slug: str, id: str) -> Response:
        return Response(_route_out(self.get_route()))

    @extend_schema(
        summary="Change a handoff route",
        description="Only the fields sent change; the whole route is checked again.",
        request=RouteInputSerializer,
        responses={200: HandoffRouteSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, slug: str, id: str) -> Response:
        route = self.get_route()
        changes = self.validated(RouteInputSerializer)
        with service_errors():
            route = route_update(route=route, changes=changes, **self.writer())
        return Response(_route_out(route))

    @extend_schema(summary="Delete a handoff route", responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request: Request, slug: str, id: str) -> Response:
        route_delete(route=self.get_route(), **self.writer())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["handoff routing"], parameters=[TENANT_PARAM, ROUTE_PARAM])
class RouteMoveView(RoutingScopedView):
    """Move a route up or down the order (positions are renumbered 0, 1, 2…)."""

    serializer_class = HandoffRouteSerializer

    @extend_schema(
        summary="Move a handoff route",
        request=RouteMoveSerializer,
        responses={200: HandoffRouteSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: str) -> Response:
        route = self.get_route()
        offset = self.validated(RouteMoveSerializer)["offset"]
        route = route_move(route=route, offset=offset, **self.writer())
        return Response(_route_out(route))


def preview_out(preview: RoutePreview) -> dict[str, Any]:
    """A preview as the API (and the console's tests) read it."""
    decision = preview.decision
    connection, primary = decision.connection, preview.primary
    local = preview.next_open_local
    return {
        "at": preview.at,
        "route": {"id": str(decision.route_id), "name": decision.route_name} if decision.route_id else None,
        "connection": {"id": str(connection.pk), "name": connection.name, "kind": connection.kind}
        if connection is not None
        else None,
        "queue": decision.queue,
        "fallback_used": decision.fallback_used,
        "primary_connection": {"id": str(primary.pk), "name": primary.name, "kind": primary.kind}
        if primary is not None
        else None,
        "outside_hours": decision.outside_hours,
        "next_open": decision.next_open,
        "next_open_local": local.isoformat() if local is not None else None,
    }


@extend_schema(tags=["handoff routing"], parameters=[TENANT_PARAM])
class RoutePreviewView(RoutingScopedView):
    """Which route a conversation would take: the route, connection, queue, fallback and business hours."""

    serializer_class = RoutePreviewSerializer

    @extend_schema(
        summary="Preview a handoff's route",
        description="Nothing is written. Without a matching route the answer is the default: the channel's "
        "ticket connection when `channel_id` names one, else the first enabled ticketing connection.",
        request=RoutePreviewInputSerializer,
        responses={200: RoutePreviewSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(RoutePreviewInputSerializer)
        channel = None
        if data["channel_id"] is not None:
            try:
                channel = channel_get(tenant=self.tenant, pk=data["channel_id"])
            except ServiceNotFound:
                raise ValidationError({"channel_id": [_("No such channel in this tenant.")]}) from None
        with service_errors():
            at = preview_instant(at=data["at"], zone=data["timezone"])
        query = RouteQuery(
            region=data["region"],
            locale=data["locale"],
            intent=data["intent"],
            channel_kind=data["channel_kind"],
        )
        preview = route_preview(
            tenant=self.tenant, query=query, at=at, zone=data["timezone"], channel=channel
        )
        return Response(RoutePreviewSerializer(preview_out(preview)).data)


@extend_schema(tags=["handoff routing"], parameters=[TENANT_PARAM])
class HoursListView(ListModelMixin, RoutingScopedView):
    """A tenant's business hours."""

    serializer_class = BusinessHoursSerializer

    def get_queryset(self) -> QuerySet[BusinessHours]:
        if getattr(self, "swagger_fake_view", False):
            return BusinessHours.objects.none()
        return hours_list(tenant=self.tenant)

    @extend_schema(
        summary="List business hours",
        responses={200: BusinessHoursSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Create business hours",
        description="`name`, `timezone` and `weekly` are required.",
        request=BusinessHoursInputSerializer,
        responses={201: BusinessHoursSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(BusinessHoursInputSerializer)
        with service_errors():
            hours = hours_create(tenant=self.tenant, data=data, **self.writer())
        return Response(BusinessHoursSerializer(hours).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["handoff routing"], parameters=[TENANT_PARAM, HOURS_PARAM])
class HoursDetailView(RoutingScopedView):
    """One set of business hours: read, change, delete (its routes then answer at any hour)."""

    serializer_class = BusinessHoursSerializer

    @extend_schema(
        summary="Get business hours", responses={200: BusinessHoursSerializer, **_errors(401, 403, 404)}
    )
    def get(self, request: Request, slug: str, id: str) -> Response:
        return Response(BusinessHoursSerializer(self.get_hours()).data)

    @extend_schema(
        summary="Change business hours",
        request=BusinessHoursInputSerializer,
        responses={200: BusinessHoursSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, slug: str, id: str) -> Response:
        hours = self.get_hours()
        changes = self.validated(BusinessHoursInputSerializer)
        with service_errors():
            hours = hours_update(hours=hours, changes=changes, **self.writer())
        return Response(BusinessHoursSerializer(hours).data)

    @extend_schema(summary="Delete business hours", responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request: Request, slug: str, id: str) -> Response:
        hours_delete(hours=self.get_hours(), **self.writer())
        return Response(status=status.HTTP_204_NO_CONTENT)
