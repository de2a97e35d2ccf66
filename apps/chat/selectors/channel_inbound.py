"""Reads for messaging-platform webhooks: the channel a public URL names, its tenant and platform account."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.db.models.fields.json import KT

from apps.chat.models import Channel, InboundEvent
from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage
from apps.tenants.models import Tenant

#: The channel kinds whose messages arrive by a platform webhook (the web widget and custom bots do not).
PLATFORM_KINDS = frozenset({"whatsapp", "slack", "teams", "sms"})


@dataclass(frozen=True)
class ChannelEndpoint:
    """A platform channel that may receive webhooks: enabled, of an active tenant, with its account."""

    tenant: Tenant
    channel: Channel
    connection: Connection


def channel_endpoint_find(*, channel_id: Any) -> ChannelEndpoint | None:
    """The channel of a public webhook URL, or None when it cannot receive messages.

    None for an unknown id, a disabled channel or tenant, a web/custom channel, a channel without a platform
    account, or an account that is missing, disabled or of another kind (a channel id is a random UUID: the
    caller answers 404 for all of these alike). The channel lives in the control database, its account in
    the tenant's region database.
    """
    channel = (
        Channel.objects.select_related("tenant__home_region")
        .filter(pk=channel_id, enabled=True, kind__in=PLATFORM_KINDS, platform_connection_id__isnull=False)
        .first()
    )
    if channel is None or channel.platform_connection_id is None or not channel.tenant.is_active:
        return None
    with tenant_context(channel.tenant):
        connection = Connection.objects.filter(
            pk=channel.platform_connection_id, kind=channel.kind, enabled=True
        ).first()
    if connection is None:
        return None
    return ChannelEndpoint(tenant=channel.tenant, channel=channel, connection=connection)


@dataclass(frozen=True)
class ChannelDeliveries:
    """What a platform channel received and sent since a moment, for the console's delivery report."""

    #: InboundEvent status -> count (queued, done, ignored, failed).
    inbound: dict[str, int] = field(default_factory=dict)
    #: Outbox status -> count (pending, delivering, delivered, dead, discarded).
    outbound: dict[str, int] = field(default_factory=dict)
    #: The platform's last reported delivery status -> count (sent, delivered, read, failed; "" = none yet).
    platform: dict[str, int] = field(default_factory=dict)


def channel_deliveries(*, channel: Channel, since: datetime) -> ChannelDeliveries:
    """Counts of a channel's platform messages in and replies out since `since`. Call in tenant context."""
    inbound = InboundEvent.objects.filter(channel_id=channel.id, created_at__gte=since)
    result = ChannelDeliveries()
    for row in inbound.values("status").annotate(n=Count("pk")):
        result.inbound[row["status"]] = row["n"]
    if channel.platform_connection_id is None:
        return result
    replies = OutboxMessage.objects.filter(
        connection_id=channel.platform_connection_id, stream="messages", created_at__gte=since
    ).annotate(platform_status=KT("payload__delivery__status"))
    for row in replies.values("status", "platform_status").annotate(n=Count("pk")):
        result.outbound[row["status"]] = result.outbound.get(row["status"], 0) + row["n"]
        status = row["platform_status"] or ""
        result.platform[status] = result.platform.get(status, 0) + row["n"]
    return result
