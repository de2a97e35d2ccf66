"""Serializers of the management API: they validate and shape; services decide."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.tenants.api_base import StrictSerializer
from apps.tenants.models import Invitation, Membership, Region, Role, Tenant, locale_validator, slug_validator


def _locale_list(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=16, validators=[locale_validator]), max_length=50, **kwargs
    )


class RegionCodeField(serializers.SlugRelatedField):
    """A region by its code (`eu`, `us`); only active regions can be chosen."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="code", queryset=Region.objects.filter(is_active=True), **kwargs)


# --- tenants --------------------------------------------------------------------------------------------
class TenantSerializer(serializers.ModelSerializer):
    home_region = serializers.CharField(source="home_region.code", read_only=True)

    class Meta:
        model = Tenant
        fields = [
            "slug",
            "name",
            "home_region",
            "default_locale",
            "enabled_locales",
            "require_2fa",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TenantCreateSerializer(StrictSerializer):
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=200)
    home_region = RegionCodeField()
    default_locale = serializers.CharField(max_length=16, validators=[locale_validator], default="en")
    enabled_locales = _locale_list(required=False, default=list)


class TenantUpdateSerializer(StrictSerializer):
    immutable_fields = ("slug", "created_at", "updated_at")

    name = serializers.CharField(max_length=200, required=False)
    home_region = RegionCodeField(required=False)
    default_locale = serializers.CharField(max_length=16, validators=[locale_validator], required=False)
    enabled_locales = _locale_list(required=False)
    require_2fa = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(
        required=False, help_text=_("Platform operators only: deactivate or reactivate the tenant.")
    )


# --- members --------------------------------------------------------------------------------------------
class UserSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "first_name", "last_name"]
        read_only_fields = fields


class MemberSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "locales", "regions", "created_at", "updated_at"]
        read_only_fields = fields


class _MembershipScopeMixin(serializers.Serializer):
    """Locales and regions that limit a localization editor; empty lists mean all."""

    locales = _locale_list(required=False)
    regions = serializers.ListField(child=serializers.CharField(max_length=16), max_length=20, required=False)

    def validate_regions(self, value: list[str]) -> list[str]:
        known = set(Region.objects.filter(is_active=True).values_list("code", flat=True))
        unknown = sorted(set(value) - known)
        if unknown:
            raise serializers.ValidationError(_("Unknown region: %(codes)s.") % {"codes": ", ".join(unknown)})
        return list(dict.fromkeys(value))


class MemberCreateSerializer(StrictSerializer, _MembershipScopeMixin):
    email = serializers.EmailField(
        help_text=_("The person is sent an invitation; they become a member when they accept it.")
    )
    role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)


class MemberUpdateSerializer(StrictSerializer, _MembershipScopeMixin):
    immutable_fields = ("id", "user", "created_at", "updated_at")

    role = serializers.ChoiceField(choices=Role.choices, required=False)


# --- invitations ----------------------------------------------------------------------------------------
class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.CharField(source="invited_by.username", read_only=True, allow_null=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "expires_at",
            "accepted_at",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["open", "accepted", "revoked", "expired"]))
    def get_status(self, invitation: Invitation) -> str:
        if invitation.accepted_at is not None:
            return "accepted"
        if invitation.revoked_at is not None:
            return "revoked"
        if invitation.expires_at <= timezone.now():
            return "expired"
        return "open"


class InvitationCreateSerializer(StrictSerializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)
