"""Management API for a tenant's SCIM tokens: /api/v1/tenants/{slug}/scim-tokens/ (`manage_members`).

The same operations as the console page: list (prefix, last use, status; never the secret), create (the
plaintext is in the reply, once), revoke.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import ScimToken
from apps.accounts.scim.selectors import scim_tokens
from apps.accounts.services.scim import scim_token_create, scim_token_revoke
from apps.tenants import roles
from apps.tenants.api_base import TENANT_PARAM, StrictSerializer, TenantScopedView, service_errors
from apps.tenants.api_base import error_responses as _errors

ID_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)


class ScimTokenSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = ScimToken
        fields = ["id", "name", "prefix", "status", "created_at", "expires_at", "last_used_at", "revoked_at"]
        read_only_fields = fields

    # A plain string in the schema (active, revoked or expired): another "status" enum would collide in name.
    @extend_schema_field(serializers.CharField(help_text="active, revoked or expired"))
    def get_status(self, token: ScimToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return "expired"
        return "active"


class ScimTokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class ScimTokenCreatedSerializer(ScimTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The token: shown in this reply only.")

    class Meta(ScimTokenSerializer.Meta):
        fields = [*ScimTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


@extend_schema(tags=["scim"], parameters=[TENANT_PARAM])
class ScimTokenListView(ListModelMixin, TenantScopedView):
    """A tenant's SCIM tokens (`manage_members`)."""

    serializer_class = ScimTokenSerializer

    def get_queryset(self) -> QuerySet[ScimToken]:
        if getattr(self, "swagger_fake_view", False):
            return ScimToken.objects.none()
        return scim_tokens(tenant=self.tenant)

    @extend_schema(
        summary="List SCIM tokens",
        responses={200: ScimTokenSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        self.require(roles.MANAGE_MEMBERS)
        return self.list(request)

    @extend_schema(
        summary="Create a SCIM token (its secret is in this reply only)",
        request=ScimTokenCreateSerializer,
        responses={201: ScimTokenCreatedSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        self.require(roles.MANAGE_MEMBERS)
        serializer = ScimTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            token, plaintext = scim_token_create(
                tenant=self.tenant,
                name=serializer.validated_data["name"],
                expires_at=serializer.validated_data["expires_at"],
                actor=request.user,
                request=request._request,
            )
        data: dict[str, Any] = {**ScimTokenSerializer(token).data, "token": plaintext}
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


@extend_schema(tags=["scim"], parameters=[TENANT_PARAM, ID_PARAM])
class ScimTokenRevokeView(TenantScopedView):
    """Revoke a SCIM token (`manage_members`); revoking twice changes nothing."""

    serializer_class = ScimTokenSerializer

    @extend_schema(
        summary="Revoke a SCIM token",
        request=None,
        responses={200: ScimTokenSerializer, **_errors(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: int) -> Response:
        token = ScimToken.objects.filter(tenant=self.tenant, pk=id).first()
        if token is None:
            raise NotFound
        self.require(roles.MANAGE_MEMBERS)
        scim_token_revoke(token=token, actor=request.user, request=request._request)
        return Response(ScimTokenSerializer(token).data)
