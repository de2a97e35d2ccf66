"""Management API views: tenants, members and invitations. Thin: check access, call a service, shape.

Access follows the console exactly: `apps.tenants.roles.can()` with the caller's membership. A tenant the
caller does not belong to (or, with a token, any tenant but the token's) does not exist for them: 404.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated, NotFound, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.tenants import roles
from apps.tenants.api.filters import InvitationFilter, MembershipFilter, TenantFilter
from apps.tenants.api.serializers import (
    InvitationCreateSerializer,
    InvitationSerializer,
    MemberCreateSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
    TenantCreateSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
)
from apps.tenants.api_base import TENANT_PARAM, TenantScopedView, request_token, service_errors
from apps.tenants.api_base import error_responses as _errors
from apps.tenants.models import Invitation, Membership, Tenant
from apps.tenants.ratelimit import ManagementRateThrottle
from apps.tenants.selectors import tenant_list
from apps.tenants.services import (
    invitation_create,
    invitation_revoke,
    membership_change_role,
    membership_remove,
    tenant_create,
    tenant_update,
)

ID_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)


# --- tenants --------------------------------------------------------------------------------------------
@extend_schema(tags=["tenants"])
class TenantListView(ListModelMixin, GenericAPIView):
    """The caller's tenants (operators: all tenants; a token: its own tenant); operators create tenants."""

    serializer_class = TenantSerializer
    filterset_class = TenantFilter
    throttle_classes = [ManagementRateThrottle]  # no tenant in the URL: the caller's limit only

    def get_queryset(self) -> QuerySet[Tenant]:
        queryset = tenant_list().order_by("name", "pk")
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        user = self.request.user
        token = request_token(self.request)
        if token is not None:
            return queryset.filter(pk=token.tenant_id)
        if user.is_staff:
            return queryset
        if not user.is_authenticated:
            raise NotAuthenticated
        return queryset.filter(memberships__user=user, is_active=True)

    @extend_schema(summary="List tenants", responses={200: TenantSerializer(many=True), **_errors(400, 401)})
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Create a tenant (platform operators, signed in)",
        request=TenantCreateSerializer,
        responses={201: TenantSerializer, **_errors(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        if request_token(request) is not None or not roles.can(request.user, None, roles.MANAGE_TENANTS):
            raise PermissionDenied(
                _("Only platform operators can create tenants, and not with a tenant token.")
            )
        serializer = TenantCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            tenant = tenant_create(**serializer.validated_data, actor=request.user, request=request._request)
        return Response(TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["tenants"], parameters=[TENANT_PARAM])
class TenantDetailView(TenantScopedView):
    """A tenant's settings: members read them, `manage_settings` changes them."""

    serializer_class = TenantSerializer

    @extend_schema(summary="Get a tenant", responses={200: TenantSerializer, **_errors(401, 404)})
    def get(self, request: Request, slug: str) -> Response:
        self.require(roles.VIEW_CONSOLE)
        return Response(TenantSerializer(self.tenant).data)

    @extend_schema(
        summary="Change tenant settings",
        description="The home region can only change while the tenant has no data (else 409).",
        request=TenantUpdateSerializer,
        responses={
            200: TenantSerializer,
            409: OpenApiResponse(description="The home region cannot change once data exists."),
            **_errors(400, 401, 403, 404),
        },
    )
    def patch(self, request: Request, slug: str) -> Response:
        self.require(roles.MANAGE_SETTINGS)
        serializer = TenantUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "is_active" in data:
            self.require(roles.MANAGE_TENANTS)
        with service_errors():
            tenant = tenant_update(tenant=self.tenant, **data, actor=request.user, request=request._request)
        return Response(TenantSerializer(tenant).data)


# --- members --------------------------------------------------------------------------------------------
@extend_schema(tags=["members"], parameters=[TENANT_PARAM])
class MemberListView(ListModelMixin, TenantScopedView):
    """Members of a tenant: every member reads, `manage_members` invites (never adds directly)."""

    serializer_class = MemberSerializer
    filterset_class = MembershipFilter

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return (
            Membership.objects.filter(tenant=self.tenant)
            .select_related("user")
            .order_by("user__username", "pk")
        )

    @extend_schema(
        summary="List members", responses={200: MemberSerializer(many=True), **_errors(400, 401, 404)}
    )
    def get(self, request: Request, slug: str) -> Response:
        self.require(roles.VIEW_CONSOLE)
        return self.list(request)

    @extend_schema(
        summary="Invite a member by e-mail",
        description=(
            "Always sends an invitation (202, the invitation); the person becomes a member only when they "
            "accept it in the console. The answer is the same whether or not an account with this address "
            "exists, so the endpoint cannot be used to find out who has an account. Locales and regions are "
            "set once the person has joined (`PATCH .../members/{id}/`)."
        ),
        request=MemberCreateSerializer,
        responses={202: InvitationSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        self.require(roles.MANAGE_MEMBERS)
        serializer = MemberCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data.get("locales") or data.get("regions"):
            message = _("Locales and regions can be set once the invited person has joined.")
            raise serializers.ValidationError(
                {key: [message] for key in ("locales", "regions") if key in data}
            )
        with service_errors():
            invitation = invitation_create(
                tenant=self.tenant,
                email=data["email"],
                role=data["role"],
                invited_by=request.user,
                base_url=request.build_absolute_uri("/"),
                request=request._request,
            )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["members"], parameters=[TENANT_PARAM, ID_PARAM])
class MemberDetailView(TenantScopedView):
    """One membership: every member reads it, `manage_members` changes the role or removes it."""

    serializer_class = MemberSerializer

    def get_object(self) -> Membership:
        membership = (
            Membership.objects.select_related("user").filter(tenant=self.tenant, pk=self.kwargs["id"]).first()
        )
        if membership is None:
            raise NotFound
        return membership

    @extend_schema(summary="Get a member", responses={200: MemberSerializer, **_errors(401, 404)})
    def get(self, request: Request, slug: str, id: int) -> Response:
        membership = self.get_object()
        self.require(roles.VIEW_CONSOLE)
        return Response(MemberSerializer(membership).data)

    @extend_schema(
        summary="Change a member's role",
        request=MemberUpdateSerializer,
        responses={
            200: MemberSerializer,
            409: OpenApiResponse(description="The tenant's last admin cannot be demoted."),
            **_errors(400, 401, 403, 404),
        },
    )
    def patch(self, request: Request, slug: str, id: int) -> Response:
        membership = self.get_object()
        self.require(roles.MANAGE_MEMBERS)
        serializer = MemberUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with service_errors():
            membership = membership_change_role(
                membership=membership,
                role=data.get("role", membership.role),
                locales=data.get("locales"),
                regions=data.get("regions"),
                actor=request.user,
                request=request._request,
            )
        return Response(MemberSerializer(membership).data)

    @extend_schema(
        summary="Remove a member",
        responses={
            204: None,
            409: OpenApiResponse(description="The tenant's last admin cannot be removed."),
            **_errors(401, 403, 404),
        },
    )
    def delete(self, request: Request, slug: str, id: int) -> Response:
        membership = self.get_object()
        self.require(roles.MANAGE_MEMBERS)
        membership_remove(membership=membership, actor=request.user, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- invitations ----------------------------------------------------------------------------------------
@extend_schema(tags=["invitations"], parameters=[TENANT_PARAM])
class InvitationListView(ListModelMixin, TenantScopedView):
    """Invitations of a tenant (`manage_members`)."""

    serializer_class = InvitationSerializer
    filterset_class = InvitationFilter

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return (
            Invitation.objects.filter(tenant=self.tenant)
            .select_related("invited_by")
            .order_by("-created_at", "-pk")
        )

    @extend_schema(
        summary="List invitations",
        responses={200: InvitationSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        self.require(roles.MANAGE_MEMBERS)
        return self.list(request)

    @extend_schema(
        summary="Invite someone by e-mail",
        request=InvitationCreateSerializer,
        responses={201: InvitationSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        self.require(roles.MANAGE_MEMBERS)
        serializer = InvitationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            invitation = invitation_create(
                tenant=self.tenant,
                email=serializer.validated_data["email"],
                role=serializer.validated_data["role"],
                invited_by=request.user,
                base_url=request.build_absolute_uri("/"),
                request=request._request,
            )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["invitations"], parameters=[TENANT_PARAM, ID_PARAM])
class InvitationRevokeView(TenantScopedView):
    """Revoke an open invitation (`manage_members`); revoking twice, or after acceptance, changes nothing."""

    serializer_class = InvitationSerializer

    @extend_schema(
        summary="Revoke an invitation",
        request=None,
        responses={200: InvitationSerializer, **_errors(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: int) -> Response:
        invitation = Invitation.objects.select_related("invited_by").filter(tenant=self.tenant, pk=id).first()
        if invitation is None:
            raise NotFound
        self.require(roles.MANAGE_MEMBERS)
        invitation_revoke(invitation=invitation, actor=request.user, request=request._request)
        return Response(InvitationSerializer(invitation).data)
