"""Identity providers, SSO domains (with DNS verification), role mappings and SSO settings over the management
API. 404 outside the caller's tenant, 403 without `manage_settings` (admins); the break-glass admin is set by
platform operators only. Every change is audited by services/sso_config.py, the client secret censored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import selectors
from apps.accounts.api.serializers import (
    CheckResultSerializer,
    DomainVerifySerializer,
    IdentityProviderInputSerializer,
    IdentityProviderSerializer,
    RoleMappingInputSerializer,
    RoleMappingMoveSerializer,
    RoleMappingPreviewInputSerializer,
    RoleMappingPreviewSerializer,
    RoleMappingSerializer,
    SsoDomainInputSerializer,
    SsoDomainSerializer,
    SsoSettingsInputSerializer,
    SsoSettingsSerializer,
)
from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services import sso_config
from apps.accounts.services.sso import role_grant
from apps.core.public import public_base_url
from apps.tenants import roles
from apps.tenants.api_base import TENANT_PARAM, TenantScopedView, service_errors
from apps.tenants.api_base import error_responses as _errors

T = TypeVar("T")
ID_PARAM = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Object id.")
TAGS = ["single sign-on"]


class SsoScopedView(TenantScopedView):
    """A `/tenants/{slug}/...` endpoint of the SSO setup: every one needs `manage_settings`."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.require(roles.MANAGE_SETTINGS)

    def found(self, getter: Callable[..., T | None]) -> T:
        """The tenant's row named by the URL's `id`; another tenant's or none: 404."""
        row = getter(tenant=self.tenant, pk=self.kwargs["id"])
        if row is None:
            raise NotFound
        return row

    def provider_out(self, providers: list[IdentityProvider]) -> Any:
        base = public_base_url(self.request._request)
        sp = {}
        for p in providers:
            if p.protocol == IdentityProvider.Protocol.OIDC:
                sp[p.pk] = {"redirect_uri": f"{base}/accounts/sso/oidc/callback/"}
            else:
                metadata = f"{base}/accounts/sso/{p.pk}/saml/metadata/"
                sp[p.pk] = {
                    "entity_id": metadata,
                    "acs_url": f"{base}/accounts/sso/{p.pk}/saml/acs/",
                    "metadata_url": metadata,
                }
        return IdentityProviderSerializer(providers, many=True, context={"sp": sp}).data


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM])
class ProviderListView(ListModelMixin, SsoScopedView):
    """A tenant's identity providers (the client secret is never returned)."""

    serializer_class = IdentityProviderSerializer

    def get_queryset(self) -> QuerySet[IdentityProvider]:
        if getattr(self, "swagger_fake_view", False):
            return IdentityProvider.objects.none()
        return selectors.provider_list(tenant=self.tenant)

    @extend_schema(
        summary="List identity providers",
        responses={200: IdentityProviderSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.provider_out(list(page or [])))

    @extend_schema(
        summary="Create an identity provider",
        description="OIDC: `oidc_discovery_url`, `oidc_client_id` and `oidc_client_secret` are required. "
        "SAML: "
        "`saml_metadata_url` or `saml_metadata_xml` (parseable IdP metadata with a signing certificate).",
        request=IdentityProviderInputSerializer,
        responses={201: IdentityProviderSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(IdentityProviderInputSerializer)
        with service_errors():
            provider = sso_config.provider_create(tenant=self.tenant, data=data, **self.writer())
        return Response(self.provider_out([provider])[0], status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class ProviderDetailView(SsoScopedView):
    serializer_class = IdentityProviderSerializer

    @extend_schema(
        summary="Get an identity provider",
        responses={200: IdentityProviderSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, id: int) -> Response:
        return Response(self.provider_out([self.found(selectors.provider_get)])[0])

    @extend_schema(
        summary="Change an identity provider",
        description="Only the fields sent change; the protocol cannot. An empty client secret keeps the "
        "stored one.",
        request=IdentityProviderInputSerializer,
        responses={200: IdentityProviderSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, slug: str, id: int) -> Response:
        provider = self.found(selectors.provider_get)
        data = self.validated(IdentityProviderInputSerializer)
        data.pop("protocol", None)
        with service_errors():
            provider = sso_config.provider_update(provider=provider, data=data, **self.writer())
        return Response(self.provider_out([provider])[0])

    @extend_schema(summary="Delete an identity provider", responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request: Request, slug: str, id: int) -> Response:
        sso_config.provider_delete(provider=self.found(selectors.provider_get), **self.writer())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class ProviderCheckView(SsoScopedView):
    """Fetch the discovery document or metadata now (through the guarded HTTP session)."""

    serializer_class = CheckResultSerializer

    @extend_schema(
        summary="Check an identity provider",
        request=None,
        responses={200: CheckResultSerializer, **_errors(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: int) -> Response:
        result = sso_config.provider_check(provider=self.found(selectors.provider_get))
        return Response({"ok": result.ok, "message": result.message})


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM])
class DomainListView(ListModelMixin, SsoScopedView):
    serializer_class = SsoDomainSerializer

    def get_queryset(self) -> QuerySet[SsoDomain]:
        if getattr(self, "swagger_fake_view", False):
            return SsoDomain.objects.none()
        return selectors.domain_list(tenant=self.tenant)

    @extend_schema(
        summary="List SSO domains",
        responses={200: SsoDomainSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Add an SSO domain",
        description="Normalised (IDNA); wildcards and public suffixes are refused. Create the returned DNS "
        "record, then call `verify`.",
        request=SsoDomainInputSerializer,
        responses={201: SsoDomainSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(SsoDomainInputSerializer)
        provider = selectors.provider_get(tenant=self.tenant, pk=data["identity_provider_id"])
        with service_errors():
            if provider is None:
                raise sso_config.ValidationFailed(
                    _("No such identity provider."),
                    {"identity_provider_id": [_("No such identity provider in this tenant.")]},
                )
            domain = sso_config.domain_add(
                tenant=self.tenant, provider=provider, domain=data["domain"], **self.writer()
            )
        return Response(SsoDomainSerializer(domain).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class DomainDetailView(SsoScopedView):
    serializer_class = SsoDomainSerializer

    @extend_schema(
        summary="Get an SSO domain", responses={200: SsoDomainSerializer, **_errors(401, 403, 404)}
    )
    def get(self, request: Request, slug: str, id: int) -> Response:
        return Response(SsoDomainSerializer(self.found(selectors.domain_get)).data)

    @extend_schema(summary="Remove an SSO domain", responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request: Request, slug: str, id: int) -> Response:
        sso_config.domain_delete(domain=self.found(selectors.domain_get), **self.writer())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class DomainVerifyView(SsoScopedView):
    """Look up the domain's challenge TXT record now; `ok` tells whether it is verified."""

    serializer_class = DomainVerifySerializer

    @extend_schema(
        summary="Verify an SSO domain",
        request=None,
        responses={200: DomainVerifySerializer, **_errors(401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: int) -> Response:
        domain = self.found(selectors.domain_get)
        result = sso_config.domain_verify(domain=domain, **self.writer())
        return Response(
            {"ok": result.ok, "message": result.message, "domain": SsoDomainSerializer(domain).data}
        )


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM])
class MappingListView(ListModelMixin, SsoScopedView):
    """A tenant's group → role mappings, in the order they are tried."""

    serializer_class = RoleMappingSerializer

    def get_queryset(self) -> QuerySet[RoleMapping]:
        if getattr(self, "swagger_fake_view", False):
            return RoleMapping.objects.none()
        return selectors.mapping_list(tenant=self.tenant)

    @extend_schema(
        summary="List role mappings",
        responses={200: RoleMappingSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        summary="Create a role mapping",
        description="Added last. `locales`/`regions` only for the localization editor role.",
        request=RoleMappingInputSerializer,
        responses={201: RoleMappingSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(RoleMappingInputSerializer)
        with service_errors():
            mapping = sso_config.mapping_create(tenant=self.tenant, data=data, **self.writer())
        return Response(RoleMappingSerializer(mapping).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class MappingDetailView(SsoScopedView):
    serializer_class = RoleMappingSerializer

    @extend_schema(
        summary="Get a role mapping", responses={200: RoleMappingSerializer, **_errors(401, 403, 404)}
    )
    def get(self, request: Request, slug: str, id: int) -> Response:
        return Response(RoleMappingSerializer(self.found(selectors.mapping_get)).data)

    @extend_schema(
        summary="Change a role mapping",
        request=RoleMappingInputSerializer,
        responses={200: RoleMappingSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, slug: str, id: int) -> Response:
        mapping = self.found(selectors.mapping_get)
        data = self.validated(RoleMappingInputSerializer)
        with service_errors():
            mapping = sso_config.mapping_update(mapping=mapping, data=data, **self.writer())
        return Response(RoleMappingSerializer(mapping).data)

    @extend_schema(summary="Delete a role mapping", responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request: Request, slug: str, id: int) -> Response:
        sso_config.mapping_delete(mapping=self.found(selectors.mapping_get), **self.writer())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class MappingMoveView(SsoScopedView):
    serializer_class = RoleMappingSerializer

    @extend_schema(
        summary="Move a role mapping",
        request=RoleMappingMoveSerializer,
        responses={200: RoleMappingSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str, id: int) -> Response:
        mapping = self.found(selectors.mapping_get)
        offset = self.validated(RoleMappingMoveSerializer)["offset"]
        mapping = sso_config.mapping_move(mapping=mapping, offset=offset, **self.writer())
        return Response(RoleMappingSerializer(mapping).data)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM])
class MappingPreviewView(SsoScopedView):
    """Which role a set of IdP groups gets (first matching mapping, else the provider's default role)."""

    serializer_class = RoleMappingPreviewSerializer

    @extend_schema(
        summary="Preview the role of a set of groups",
        request=RoleMappingPreviewInputSerializer,
        responses={200: RoleMappingPreviewSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.validated(RoleMappingPreviewInputSerializer)
        provider = None
        if data.get("identity_provider_id") is not None:
            provider = selectors.provider_get(tenant=self.tenant, pk=data["identity_provider_id"])
            if provider is None:
                raise NotFound
        grant = role_grant(
            tenant=self.tenant,
            groups=set(data["groups"]),
            default_role=provider.default_role if provider else "",
        )
        role, locales, regions = grant if grant else (None, [], [])
        return Response({"role": role, "locales": locales, "regions": regions})


def _settings_out(tenant: Any) -> dict[str, Any]:
    readiness = selectors.sso_readiness(tenant=tenant)
    missing = []
    if not readiness.has_active_provider:
        missing.append("active_identity_provider")
    if not readiness.has_verified_domain:
        missing.append("verified_domain")
    if not readiness.has_mapping:
        missing.append("role_mapping")
    if readiness.break_glass is None:
        missing.append("break_glass_admin")
    glass = readiness.break_glass
    return {
        "sso_enforced": tenant.sso_enforced,
        "can_enforce": readiness.can_enforce,
        "missing": missing,
        "break_glass_user_id": glass.user_id if glass else None,
        "break_glass_username": glass.user.get_username() if glass else None,
    }


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM])
class SsoSettingsView(SsoScopedView):
    """SSO enforcement and the break-glass admin, with what is still missing."""

    serializer_class = SsoSettingsSerializer

    @extend_schema(
        summary="Get SSO settings", responses={200: SsoSettingsSerializer, **_errors(401, 403, 404)}
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(_settings_out(self.tenant))

    @extend_schema(
        summary="Change SSO settings",
        description="Enforcement needs an active identity provider with a verified domain, and a break-glass "
        "admin or `confirm_without_break_glass`. `break_glass_user_id` (an admin's user id, or null): "
        "platform "
        "operators only.",
        request=SsoSettingsInputSerializer,
        responses={200: SsoSettingsSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, slug: str) -> Response:
        data = self.validated(SsoSettingsInputSerializer)
        user = request.user
        if "break_glass_user_id" in data:
            if not (user.is_staff and user.is_active):
                raise PermissionDenied(_("Only platform operators may designate the break-glass admin."))
            with service_errors():
                sso_config.break_glass_set(
                    tenant=self.tenant, user_id=data["break_glass_user_id"], **self.writer()
                )
        if "sso_enforced" in data:
            with service_errors():
                sso_config.enforcement_set(
                    tenant=self.tenant,
                    enforced=data["sso_enforced"],
                    confirm_without_break_glass=data["confirm_without_break_glass"],
                    **self.writer(),
                )
        self.tenant.refresh_from_db()
        return Response(_settings_out(self.tenant))
