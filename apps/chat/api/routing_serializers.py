"""Serializers of the handoff-routing management API: routes, business hours and the route preview. Inputs
are loosely typed on purpose: the services check every value and answer with field errors."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.chat.models import BusinessHours, HandoffRoute
from apps.chat.services.routes import HOURS_FIELDS, ROUTE_FIELDS
from apps.tenants.api_base import StrictSerializer

_LIST_HELP = {
    "regions": _("Regions the conversation's region must be one of (empty: any)."),
    "locales": _("Locales the conversation's locale must be one of; a language (“de”) matches its variants."),
    "intents": _("Intents that must have led to the handoff (empty: any)."),
    "channel_kinds": _("Channel kinds (web, whatsapp, slack, teams, sms, custom; empty: any)."),
}
_WEEKLY_HELP = _(
    'Local opening intervals per day, e.g. {"mon": [["09:00", "12:30"], ["13:30", "17:00"]]}; a missing '
    'day is closed. An interval may end at "24:00"; one crossing midnight must be split over two days.'
)
_HOLIDAYS_HELP = _("Local dates (YYYY-MM-DD) without any opening.")
READ_ONLY = ("id", "created_at", "updated_at")


class HandoffRouteSerializer(serializers.ModelSerializer):
    business_hours_id = serializers.UUIDField(allow_null=True, read_only=True)

    class Meta:
        model = HandoffRoute
        fields = ["id", *ROUTE_FIELDS, "created_at", "updated_at"]
        read_only_fields = fields


def _list(name: str, required: bool) -> serializers.ListField:
    extra: dict[str, Any] = {"default": list} if required else {}
    return serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, max_length=50, help_text=_LIST_HELP[name],
        **extra,
    )  # fmt: skip


class RouteInputSerializer(StrictSerializer):
    """A route to create (name and connection_id required) or change (only the fields sent)."""

    immutable_fields = READ_ONLY

    name = serializers.CharField(max_length=100, required=False)
    position = serializers.IntegerField(
        required=False, help_text=_("Routes are tried by position, lowest first (default: last).")
    )
    enabled = serializers.BooleanField(required=False)
    regions = _list("regions", False)
    locales = _list("locales", False)
    intents = _list("intents", False)
    channel_kinds = _list("channel_kinds", False)
    connection_id = serializers.UUIDField(
        required=False,
        help_text=_("The ticketing connection (ServiceNow, Salesforce, HubSpot) of this route."),
    )
    queue = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text=_("Assignment group (ServiceNow), queue id (Salesforce) or pipeline (HubSpot)."),
    )
    fallback_connection_id = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text=_("Takes the ticket while the connection is disabled or its circuit breaker is open."),
    )
    fallback_queue = serializers.CharField(max_length=255, required=False, allow_blank=True)
    business_hours_id = serializers.UUIDField(
        required=False, allow_null=True, help_text=_("When people answer (null: at any hour).")
    )


class RouteMoveSerializer(StrictSerializer):
    offset = serializers.IntegerField(
        min_value=-1000, max_value=1000, help_text=_("Places to move: -1 one up (tried earlier), 1 one down.")
    )


class BusinessHoursSerializer(serializers.ModelSerializer):
    class Meta:
        model = BusinessHours
        fields = ["id", *HOURS_FIELDS, "created_at", "updated_at"]
        read_only_fields = fields


class BusinessHoursInputSerializer(StrictSerializer):
    immutable_fields = READ_ONLY

    name = serializers.CharField(max_length=100, required=False)
    timezone = serializers.CharField(
        max_length=64, required=False, help_text=_("IANA time zone, e.g. Europe/Berlin.")
    )
    weekly = serializers.JSONField(required=False, help_text=_WEEKLY_HELP)
    holidays = serializers.ListField(
        child=serializers.CharField(max_length=10), required=False, max_length=366, help_text=_HOLIDAYS_HELP
    )


class RoutePreviewInputSerializer(StrictSerializer):
    channel_id = serializers.UUIDField(
        required=False,
        allow_null=True,
        default=None,
        help_text=_(
            "A channel of the tenant: blank fields take its values and, without a matching route, its ticket "
            "connection answers."
        ),
    )
    region = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    locale = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    intent = serializers.CharField(max_length=32, required=False, allow_blank=True, default="handoff")
    channel_kind = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    at = serializers.CharField(
        max_length=40,
        required=False,
        allow_blank=True,
        default="",
        help_text=_(
            "The instant to check, ISO 8601 (default: now); without an offset it is local time in `timezone`."
        ),
    )
    timezone = serializers.CharField(
        max_length=64, required=False, default="UTC", help_text=_("IANA zone of `at` and of the answer.")
    )


class _NamedSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class _ConnectionRefSerializer(_NamedSerializer):
    kind = serializers.CharField()


class RoutePreviewSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text=_("The instant checked (UTC)."))
    route = _NamedSerializer(allow_null=True, help_text=_("The matching route (null: the default)."))
    connection = _ConnectionRefSerializer(allow_null=True, help_text=_("Who receives the ticket."))
    queue = serializers.CharField()
    fallback_used = serializers.BooleanField()
    primary_connection = _ConnectionRefSerializer(
        allow_null=True, help_text=_("The route's connection that was skipped when the fallback was used.")
    )
    outside_hours = serializers.BooleanField()
    next_open = serializers.DateTimeField(allow_null=True, help_text=_("The next opening (UTC)."))
    next_open_local = serializers.CharField(
        allow_null=True, help_text=_("The next opening in the zone asked in (ISO 8601 with offset).")
    )
