"""Serializers of the SSO configuration API. Inputs are loosely typed on purpose: services/sso_config.py
checks every value and answers with field errors. The OIDC client secret is write-only."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services.sso_config import PROVIDER_FIELDS, domain_challenge
from apps.tenants.api_base import StrictSerializer

READ_ONLY = ("id", "created_at", "updated_at")


class IdentityProviderSerializer(serializers.ModelSerializer):
    has_client_secret = serializers.SerializerMethodField(
        help_text=_("Whether a client secret is stored (it is never returned).")
    )
    # Plain strings, not enums: drf-spectacular would name Role's choices twice (RoleEnum).
    default_role = serializers.CharField(
        read_only=True, help_text=_("Role without a matching group, or empty.")
    )
    service_provider = serializers.SerializerMethodField(
        help_text=_(
            "What to enter at the IdP: redirect URI (OIDC) or entity ID, ACS and metadata URLs (SAML)."
        )
    )

    class Meta:
        model = IdentityProvider
        fields = ["id", *PROVIDER_FIELDS, "has_client_secret", "service_provider", "created_at", "updated_at"]
        read_only_fields = fields

    def get_has_client_secret(self, obj: IdentityProvider) -> bool:
        return obj.oidc_client_secret is not None

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_service_provider(self, obj: IdentityProvider) -> dict[str, str]:
        values: dict[str, str] = self.context.get("sp", {}).get(obj.pk, {})
        return values


class IdentityProviderInputSerializer(StrictSerializer):
    """A provider to create (name, protocol and the protocol's fields required) or change (fields sent)."""

    immutable_fields = (*READ_ONLY, "has_client_secret", "service_provider")

    name = serializers.CharField(max_length=100, required=False)
    protocol = serializers.ChoiceField(choices=IdentityProvider.Protocol.choices, required=False)
    is_active = serializers.BooleanField(required=False)
    oidc_discovery_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    oidc_client_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
    oidc_client_secret = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text=_("Write-only; never returned. Omit or leave empty on change to keep the stored secret."),
    )
    oidc_scopes = serializers.CharField(max_length=255, required=False, allow_blank=True)
    saml_metadata_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    saml_metadata_xml = serializers.CharField(max_length=200_000, required=False, allow_blank=True)
    groups_claim = serializers.CharField(max_length=200, required=False)
    default_role = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        help_text=_("A role (admin, connector_manager, …), or empty to refuse users with no mapped group."),
    )
    accept_idp_mfa = serializers.BooleanField(required=False)
    mfa_values = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=50
    )


class SsoDomainSerializer(serializers.ModelSerializer):
    identity_provider_id = serializers.IntegerField(read_only=True)
    verified = serializers.SerializerMethodField()
    dns_record = serializers.SerializerMethodField(
        help_text=_("The TXT record that proves control of the domain: {name, type, value}.")
    )

    class Meta:
        model = SsoDomain
        fields = [
            "id",
            "domain",
            "identity_provider_id",
            "verified",
            "verified_at",
            "dns_record",
            "created_at",
        ]
        read_only_fields = fields

    def get_verified(self, obj: SsoDomain) -> bool:
        return obj.verified_at is not None

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_dns_record(self, obj: SsoDomain) -> dict[str, str]:
        name, value = domain_challenge(obj)
        return {"name": name, "type": "TXT", "value": value}


class SsoDomainInputSerializer(StrictSerializer):
    domain = serializers.CharField(max_length=253)
    identity_provider_id = serializers.IntegerField()


class CheckResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()


class DomainVerifySerializer(CheckResultSerializer):
    domain = SsoDomainSerializer()


class RoleMappingSerializer(serializers.ModelSerializer):
    role = serializers.CharField(read_only=True)

    class Meta:
        model = RoleMapping
        fields = ["id", "group", "role", "locales", "regions", "position", "created_at", "updated_at"]
        read_only_fields = fields


class RoleMappingInputSerializer(StrictSerializer):
    """A mapping to create (group and role required; added last) or change (fields sent)."""

    immutable_fields = (*READ_ONLY, "position")

    group = serializers.CharField(max_length=255, required=False)
    role = serializers.CharField(max_length=32, required=False)
    locales = serializers.ListField(child=serializers.CharField(max_length=16), required=False, max_length=50)
    regions = serializers.ListField(child=serializers.CharField(max_length=16), required=False, max_length=50)


class RoleMappingMoveSerializer(StrictSerializer):
    offset = serializers.IntegerField(
        min_value=-500,
        max_value=500,
        help_text=_("Places to move; negative moves it earlier (tried sooner)."),
    )


class RoleMappingPreviewInputSerializer(StrictSerializer):
    groups = serializers.ListField(child=serializers.CharField(max_length=255), max_length=500)
    identity_provider_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text=_("Apply this provider's default role when nothing matches."),
    )


class RoleMappingPreviewSerializer(serializers.Serializer):
    role = serializers.CharField(allow_null=True)
    locales = serializers.ListField(child=serializers.CharField())
    regions = serializers.ListField(child=serializers.CharField())


class SsoSettingsSerializer(serializers.Serializer):
    sso_enforced = serializers.BooleanField()
    can_enforce = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())
    break_glass_user_id = serializers.IntegerField(allow_null=True)
    break_glass_username = serializers.CharField(allow_null=True)


class SsoSettingsInputSerializer(StrictSerializer):
    immutable_fields = ("can_enforce", "missing", "break_glass_username")

    sso_enforced = serializers.BooleanField(required=False)
    confirm_without_break_glass = serializers.BooleanField(required=False, default=False)
    break_glass_user_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text=_("Platform operators only: the tenant's break-glass admin."),
    )
