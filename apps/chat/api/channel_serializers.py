"""Serializers of the channel and API-key management API. A key's plaintext appears only in the response
that creates it (create, rotate); every other response shows its prefix."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.chat.models import Action, ApiKey, ApiKeyScope, Channel, ChannelKind, IdentityMode
from apps.chat.selectors.channels import api_key_state
from apps.chat.services.channel_setup import (
    channel_webhook_url,
    identity_secret_is_set,
    platform_connection,
)
from apps.chat.services.channels import CHANNEL_FIELDS, MAX_OVERLAP_HOURS
from apps.core.context import tenant_context
from apps.tenants.api_base import StrictSerializer

_ACTIONS_HELP = _(
    "Business actions the channel may perform: order_status, create_ticket, capture_lead, handoff."
)
_KB_HELP = _("Answer only from this knowledge base of the tenant (null: all of them).")
_REGION_HELP = _("Region whose regional variants to prefer (blank: the tenant's home region).")
_TICKET_HELP = _("Connection that receives tickets and handoffs (it must be able to create tickets).")
_LEAD_HELP = _("Connection that receives captured leads (it must be able to create leads).")


_ORIGINS_HELP = _(
    "Web widget: the sites (scheme://host[:port]) allowed to use the widget key; https required in "
    "production except for localhost."
)
_IDENTITY_HELP = _(
    "How the site vouches for its users: none, hmac (user_hash = HMAC-SHA256 hex of the user id, keyed with "
    "the identity secret) or jwt (HS256 token signed with it). Web and custom channels only."
)
_SECRET_HELP = _("The identity secret (at least 32 characters). Write-only: never returned.")
SETUP_READ_FIELDS = ("webhook_url", "widget_key", "platform", "identity_secret_set")


class PlatformAccountSerializer(serializers.Serializer):
    """The platform account as shown: settings in clear, secrets only as set / not set."""

    connection_id = serializers.UUIDField()
    kind = serializers.CharField()
    endpoint_region = serializers.CharField()
    settings = serializers.DictField()
    credentials_set = serializers.DictField(
        child=serializers.BooleanField(), help_text=_("Which credentials hold a value.")
    )
    last_test_ok = serializers.BooleanField(allow_null=True)
    last_test_message = serializers.CharField()


class PlatformInputSerializer(StrictSerializer):
    """The platform account to create or change (WhatsApp, Slack, Teams, SMS channels)."""

    settings = serializers.DictField(
        required=False, default=dict, help_text=_("The connector's non-secret settings, by name.")
    )
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        default=dict,
        help_text=_("Write-only secrets by name; a blank or absent one keeps the stored value."),
    )
    endpoint_region = serializers.CharField(
        required=False, allow_null=True, default=None, help_text=_("Default: the tenant's home region.")
    )


class ChannelSerializer(serializers.ModelSerializer):
    active_keys = serializers.SerializerMethodField(help_text=_("Keys that authenticate now."))
    webhook_url = serializers.SerializerMethodField(
        help_text=_("Platform channels: the URL to paste into the platform's webhook settings.")
    )
    platform = serializers.SerializerMethodField(help_text=_("The platform account (null: none)."))
    identity_secret_set = serializers.SerializerMethodField(
        help_text=_("Whether an identity secret is set (the secret itself is never returned).")
    )

    class Meta:
        model = Channel
        fields = [
            "id",
            *CHANNEL_FIELDS,
            "enabled",
            "active_keys",
            "webhook_url",
            "platform",
            "widget_key",
            "allowed_origins",
            "identity_mode",
            "identity_secret_set",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_active_keys(self, obj: Channel) -> int:
        count = getattr(obj, "active_keys", None)
        if count is None:
            from apps.chat.selectors.channels import active_keys_q

            count = obj.api_keys.filter(active_keys_q()).count()
        return int(count)

    def get_webhook_url(self, obj: Channel) -> str | None:
        from apps.chat.services.channel_setup import PLATFORM_KINDS

        if obj.kind not in PLATFORM_KINDS:
            return None
        return channel_webhook_url(obj, self.context.get("request"))

    @extend_schema_field(PlatformAccountSerializer(allow_null=True))
    def get_platform(self, obj: Channel) -> dict[str, Any] | None:
        preloaded = self.context.get("connections")
        if preloaded is not None:  # a list: loaded for the page at once
            connection = preloaded.get(obj.platform_connection_id)
        else:
            connection = platform_connection(obj)
        if connection is None:
            return None
        from apps.integrations.selectors.connections import secrets_status

        with tenant_context(self.context.get("tenant") or obj.tenant):
            credentials_set = secrets_status(connection)
        return {
            "connection_id": str(connection.pk),
            "kind": connection.kind,
            "endpoint_region": connection.endpoint_region,
            "settings": dict(connection.settings),
            "credentials_set": credentials_set,
            "last_test_ok": connection.last_test_ok,
            "last_test_message": connection.last_test_message,
        }

    def get_identity_secret_set(self, obj: Channel) -> bool:
        return identity_secret_is_set(obj)


class _SetupInput(StrictSerializer):
    platform = PlatformInputSerializer(
        required=False,
        help_text=_("WhatsApp, Slack, Teams and SMS: the platform account (secrets write-only)."),
    )
    allowed_origins = serializers.ListField(
        child=serializers.CharField(max_length=300), required=False, max_length=50, help_text=_ORIGINS_HELP
    )
    identity_mode = serializers.ChoiceField(
        choices=IdentityMode.choices, required=False, help_text=_IDENTITY_HELP
    )
    identity_secret = serializers.CharField(
        required=False, write_only=True, max_length=500, trim_whitespace=False, help_text=_SECRET_HELP
    )


class ChannelCreateSerializer(_SetupInput):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=ChannelKind.choices, default=ChannelKind.WEB)
    default_locale = serializers.CharField(
        max_length=16,
        required=False,
        help_text=_("Locale of conversations that name none (default: the tenant's)."),
    )
    allowed_actions = serializers.ListField(
        child=serializers.ChoiceField(choices=Action.choices),
        required=False,
        default=list,
        help_text=_ACTIONS_HELP,
    )
    knowledge_base_id = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text=_KB_HELP
    )
    content_region = serializers.CharField(
        max_length=16, required=False, allow_blank=True, default="", help_text=_REGION_HELP
    )
    ticket_connection_id = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text=_TICKET_HELP
    )
    lead_connection_id = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text=_LEAD_HELP
    )


class ChannelUpdateSerializer(_SetupInput):
    immutable_fields = ("id", "active_keys", "created_at", "updated_at", *SETUP_READ_FIELDS)

    name = serializers.CharField(max_length=100, required=False)
    kind = serializers.ChoiceField(choices=ChannelKind.choices, required=False)
    default_locale = serializers.CharField(max_length=16, required=False)
    allowed_actions = serializers.ListField(
        child=serializers.ChoiceField(choices=Action.choices), required=False, help_text=_ACTIONS_HELP
    )
    knowledge_base_id = serializers.UUIDField(required=False, allow_null=True, help_text=_KB_HELP)
    content_region = serializers.CharField(
        max_length=16, required=False, allow_blank=True, help_text=_REGION_HELP
    )
    ticket_connection_id = serializers.UUIDField(required=False, allow_null=True, help_text=_TICKET_HELP)
    lead_connection_id = serializers.UUIDField(required=False, allow_null=True, help_text=_LEAD_HELP)
    enabled = serializers.BooleanField(
        required=False,
        help_text=_("A disabled channel's keys are refused with 403 until it is enabled again."),
    )


class ApiKeySerializer(serializers.ModelSerializer):
    channel = serializers.UUIDField(source="channel_id", read_only=True)
    state = serializers.SerializerMethodField(help_text=_("active, expiring, expired or revoked."))
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "channel",
            "name",
            "prefix",
            "scopes",
            "state",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "created_at",
            "created_by",
        ]
        read_only_fields = fields

    def get_state(self, obj: ApiKey) -> str:
        return api_key_state(obj)

    def get_created_by(self, obj: ApiKey) -> str | None:
        return obj.created_by.get_username() if obj.created_by is not None else None


class ApiKeyIssuedSerializer(ApiKeySerializer):
    key = serializers.CharField(
        read_only=True, help_text=_("The key itself. Shown only in this response: store it now.")
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices),
        min_length=1,
        default=[ApiKeyScope.CHAT],
        help_text=_("chat (conversations and messages), transcripts (read transcripts)."),
    )
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text=_("When the key stops working (null: never)."),
    )


class ApiKeyRotateSerializer(StrictSerializer):
    overlap_hours = serializers.IntegerField(
        min_value=0,
        max_value=MAX_OVERLAP_HOURS,
        default=24,
        help_text=_("How long the old key keeps working next to the new one (0: stop it now)."),
    )


class ApiKeyRotatedSerializer(serializers.Serializer):
    key = ApiKeyIssuedSerializer(help_text=_("The new key, with its plaintext (shown only here)."))
    previous = ApiKeySerializer(help_text=_("The old key, now expiring at the end of the overlap."))
