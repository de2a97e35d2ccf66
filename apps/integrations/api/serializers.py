"""Serializers of the connections API: credentials are write-only; responses say only which are set."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.integrations.models import Connection
from apps.integrations.selectors.connections import secrets_status
from apps.tenants.api_base import StrictSerializer

_SETTINGS_HELP = _("The connector's non-secret settings, by name (see the connector's configuration schema).")
_CREDENTIALS_HELP = _(
    "The connector's secret settings, by name. Write-only: never returned. On update, a blank value keeps "
    "the stored secret."
)
_FIELD_MAP_HELP = _('Overrides of the default field map: {"stream": {"canonical field": "vendor field"}}.')


class ConnectionSerializer(serializers.ModelSerializer):
    credentials_set = serializers.SerializerMethodField(
        help_text=_("For each secret setting, whether a value is stored (the values are never shown).")
    )

    class Meta:
        model = Connection
        fields = [
            "id",
            "name",
            "kind",
            "endpoint_region",
            "enabled",
            "settings",
            "credentials_set",
            "field_map",
            "last_test_at",
            "last_test_ok",
            "last_test_message",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "boolean"}})
    def get_credentials_set(self, obj: Connection) -> dict[str, bool]:
        return secrets_status(obj)


class _JsonObjectField(serializers.DictField):
    """A JSON object whose inner shape the service validates against the connector."""


class ConnectionCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.CharField(max_length=32, help_text=_("salesforce, hubspot, servicenow or sap."))
    endpoint_region = serializers.CharField(max_length=16, help_text=_("Region code of the vendor endpoint."))
    enabled = serializers.BooleanField(default=True)
    settings = _JsonObjectField(required=False, default=dict, help_text=_SETTINGS_HELP)
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        default=dict,
        write_only=True,
        help_text=_CREDENTIALS_HELP,
    )
    field_map = _JsonObjectField(required=False, default=dict, help_text=_FIELD_MAP_HELP)


class ConnectionUpdateSerializer(StrictSerializer):
    immutable_fields = ("id", "kind", "credentials_set", "last_test_at", "last_test_ok", "last_test_message")

    name = serializers.CharField(max_length=100, required=False)
    endpoint_region = serializers.CharField(max_length=16, required=False)
    enabled = serializers.BooleanField(required=False)
    settings = _JsonObjectField(
        required=False, help_text=_("Replaces the non-secret settings as a whole (absent keys: defaults).")
    )
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        write_only=True,
        help_text=_CREDENTIALS_HELP,
    )
    field_map = _JsonObjectField(required=False, help_text=_FIELD_MAP_HELP)


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField(help_text=_("The outcome in plain words, with the vendor's own error."))
    warnings = serializers.ListField(child=serializers.CharField())
    connection = ConnectionSerializer()


def nest_errors(errors: dict[str, Any], *, settings: set[str], credentials: set[str]) -> dict[str, Any]:
    """Put a service's per-setting errors under `settings` / `credentials`, where the request had them."""
    nested: dict[str, Any] = {}
    for key, messages in errors.items():
        if key in settings:
            nested.setdefault("settings", {})[key] = messages
        elif key in credentials:
            nested.setdefault("credentials", {})[key] = messages
        else:
            nested[key] = messages
    return nested
