"""Channels and API keys over the management API: the console's rules. 404 outside the caller's tenant, 403
without the `manage_channels` permission (admins). A key's plaintext is returned by create and rotate only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.chat.api.channel_serializers import (
    ApiKeyCreateSerializer,
    ApiKeyIssuedSerializer,
    ApiKeyRotatedSerializer,
    ApiKeyRotateSerializer,
    ApiKeySerializer,
    ChannelCreateSerializer,
    ChannelSerializer,
    ChannelUpdateSerializer,
)
from apps.chat.models import ApiKey, Channel, ChannelKind
from apps.chat.selectors.channels import api_key_get, api_key_list, channel_get, channel_list
from apps.chat.selectors.delivery import platform_connections
from apps.chat.services.channel_setup import (
    channel_create_with_platform,
    channel_platform_set,
    channel_setup_update,
    channel_widget_key_rotate,
)
from apps.chat.services.channels import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    channel_set_enabled,
    channel_update,
)
from apps.core.errors import NotFound as ServiceNotFound
from apps.tenants import roles
from apps.tenants.api_base import TENANT_PARAM, TenantScopedView, service_errors
from apps.tenants.api_base import error_responses as _errors

CHANNEL_PARAM = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Channel id.")
KEY_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="API key id.")
SETUP_INPUTS = ("platform", "allowed_origins", "identity_mode", "identity_secret")


def _issued(key: ApiKey, plaintext: str) -> dict[str, Any]:
    return {**ApiKeySerializer(key).data, "key": plaintext}


class ChannelFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label=_("Search name"))
    kind = django_filters.ChoiceFilter(choices=ChannelKind.choices)
    enabled = django_filters.BooleanFilter()

    class Meta:
        model = Channel
        fields = ["q", "kind", "enabled"]


class ApiKeyFilter(django_filters.FilterSet):
    STATES = [("active", _("Active")), ("expired", _("Expired")), ("revoked", _("Revoked"))]
    state = django_filters.ChoiceFilter(choices=STATES, method="by_state", label=_("State"))

    class Meta:
        model = ApiKey
        fields = ["state"]

    def by_state(self, queryset: QuerySet[ApiKey], name: str, value: str) -> QuerySet[ApiKey]:
        now = timezone.now()
        if value == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if value == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)


class ChannelScopedView(TenantScopedView):
    """A `/tenants/{slug}/...` endpoint about channels: every one needs `manage_channels`."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.require(roles.MANAGE_CHANNELS)

    def _out(self, channel: Channel) -> dict[str, Any]:
        return dict(ChannelSerializer(channel, context={"request": self.request}).data)

    def get_channel(self) -> Channel:
        try:
            return channel_get(tenant=self.tenant, pk=self.kwargs["id"])
        except ServiceNotFound:
            raise NotFound from None

    def get_key(self) -> ApiKey:
        try:
            return api_key_get(tenant=self.tenant, pk=self.kwargs["id"])
        except ServiceNotFound:
            raise NotFound from None


@extend_schema(tags=["channels"], parameters=[TENANT_PARAM])
class ChannelListView(ListModelMixin, ChannelScopedView):
    """A tenant's chatbot channels."""

    serializer_class = ChannelSerializer
    filterset_class = ChannelFilter

    def get_queryset(self) -> QuerySet[Channel]:
        if getattr(self, "swagger_fake_view", False):
            return Channel.objects.none()
        return channel_list(tenant=self.tenant)

    @extend_schema(
        summary="List channels", responses={200: ChannelSerializer(many=True), **_errors(400, 401, 403, 404)}
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        if args and kwargs.get("many"):  # the page: its platform accounts in one query
            page = list(args[0])
            context: dict[str, Any] = dict(self.get_serializer_context())
            context["tenant"] = self.tenant
            context["connections"] = platform_connections(tenant=self.tenant, channels=page)
            kwargs["context"] = context
            args = (page, *args[1:])
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        summary="Create a channel",
        description="The knowledge base and connections must be the tenant's; a ticket connection must be "
        "able to create tickets and a lead connection leads.",
        request=ChannelCreateSerializer,
        responses={201: ChannelSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        serializer = ChannelCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        setup = {name: data.pop(name) for name in SETUP_INPUTS if name in data}
        with service_errors():
            channel = channel_create_with_platform(
                tenant=self.tenant,
                channel_data=data,
                **setup,
                actor=request.user,
                request=request._request,
            )
        return Response(self._out(channel), status=status.HTTP_201_CREATED)


@extend_schema(tags=["channels"], parameters=[TENANT_PARAM, CHANNEL_PARAM])
class ChannelDetailView(ChannelScopedView):
    """One channel: read, change, enable or disable."""

    serializer_class = ChannelSerializer

    @extend_schema(summary="Get a channel", responses={200: ChannelSerializer, **_errors(401, 403, 404)})
    def get(self, request: Request, slug: str, id: str) -> Response:
        return Response(self._out(self.get_channel()))

    @extend_schema(
        summary="Change a channel",
        description="Only the fields sent change. `enabled: false` disables the channel: its keys get 403 at "
        "once.",
        request=ChannelUpdateSerializer,
        responses={200: ChannelSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, slug: str, id: str) -> Response:
        channel = self.get_channel()
        serializer = ChannelUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        enabled = changes.pop("enabled", None)
        platform = changes.pop("platform", None)
        setup = {name: changes.pop(name) for name in SETUP_INPUTS if name in changes}
        with service_errors():
            if changes:
                channel = channel_update(
                    channel=channel, changes=changes, actor=request.user, request=request._request
                )
            if platform is not None:
                channel_platform_set(
                    channel=channel,
                    settings_=platform.get("settings") or {},
                    credentials=platform.get("credentials") or {},
                    endpoint_region=platform.get("endpoint_region"),
                    actor=request.user,
                    request=request._request,
                )
            if setup:
                channel = channel_setup_update(
                    channel=channel, **setup, actor=request.user, request=request._request
                )
            if enabled is not None:
                channel = channel_set_enabled(
                    channel=channel, enabled=enabled, actor=request.user, request=request._request
                )
        return Response(self._out(channel))


@extend_schema(tags=["channels"], parameters=[TENANT_PARAM, CHANNEL_PARAM])
class ChannelWidgetKeyRotateView(ChannelScopedView):
    """Issue a new public widget key for a web widget channel."""

    serializer_class = ChannelSerializer

    @extend_schema(
        summary="Rotate the widget key",
        description="The old key stops at once: sites must embed the snippet with the new `widget_key`. "
        "Web widget channels only (400 otherwise).",
        request=None,
        responses={200: ChannelSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: str) -> Response:
        channel = self.get_channel()
        with service_errors():
            channel_widget_key_rotate(channel=channel, actor=request.user, request=request._request)
        return Response(self._out(channel))


@extend_schema(tags=["channels"], parameters=[TENANT_PARAM, CHANNEL_PARAM])
class ChannelKeyListView(ListModelMixin, ChannelScopedView):
    """A channel's API keys (newest first, revoked and expired ones included)."""

    serializer_class = ApiKeySerializer
    filterset_class = ApiKeyFilter

    def get_queryset(self) -> QuerySet[ApiKey]:
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        return api_key_list(channel=self.get_channel())

    @extend_schema(
        summary="List a channel's API keys",
        responses={200: ApiKeySerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str, id: str) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Create an API key",
        description="The response carries the key itself in `key`: it is shown only this once and stored "
        "only as a hash.",
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyIssuedSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: str) -> Response:
        channel = self.get_channel()
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            key, plaintext = api_key_create(
                channel=channel, **serializer.validated_data, actor=request.user, request=request._request
            )
        return Response(_issued(key, plaintext), status=status.HTTP_201_CREATED)


@extend_schema(tags=["channels"], parameters=[TENANT_PARAM, KEY_PARAM])
class ApiKeyDetailView(ChannelScopedView):
    serializer_class = ApiKeySerializer

    @extend_schema(summary="Get an API key", responses={200: ApiKeySerializer, **_errors(401, 403, 404)})
    def get(self, request: Request, slug: str, id: str) -> Response:
        return Response(ApiKeySerializer(self.get_key()).data)


@extend_schema(tags=["channels"], parameters=[TENANT_PARAM, KEY_PARAM])
class ApiKeyRevokeView(ChannelScopedView):
    serializer_class = ApiKeySerializer

    @extend_schema(
        summary="Revoke an API key",
        description="Effective at once on every web process. Revoking a revoked key changes nothing.",
        request=None,
        responses={200: ApiKeySerializer, **_errors(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: str) -> Response:
        key = api_key_revoke(key=self.get_key(), actor=request.user, request=request._request)
        return Response(ApiKeySerializer(key).data)


@extend_schema(tags=["channels"], parameters=[TENANT_PARAM, KEY_PARAM])
class ApiKeyRotateView(ChannelScopedView):
    serializer_class = ApiKeyRotatedSerializer

    @extend_schema(
        summary="Rotate an API key",
        description="Issues a new key with the same name and scopes (its plaintext is in `key.key`, shown "
        "only here); the old key keeps working for `overlap_hours`, then expires.",
        request=ApiKeyRotateSerializer,
        responses={
            201: ApiKeyRotatedSerializer,
            409: OpenApiResponse(description="The key is revoked or expired."),
            **_errors(400, 401, 403, 404),
        },
    )
    def post(self, request: Request, slug: str, id: str) -> Response:
        key = self.get_key()
        serializer = ApiKeyRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        overlap = timedelta(hours=serializer.validated_data["overlap_hours"])
        with service_errors():
            new_key, plaintext = api_key_rotate(
                key=key, overlap=overlap, actor=request.user, request=request._request
            )
        body = {"key": _issued(new_key, plaintext), "previous": ApiKeySerializer(key).data}
        return Response(body, status=status.HTTP_201_CREATED)
