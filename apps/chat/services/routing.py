"""Where a handoff's ticket goes (issue 18): the tenant's routing rules, business hours and fallbacks.

`handoff_route` is called when a conversation is handed off. Without rules it answers what the hub always
did: the channel's ticket connection, or the first enabled ticketing connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apps.chat.models import Conversation
from apps.chat.principal import ChannelInfo
from apps.chat.services import actions
from apps.integrations.models import Connection


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The connection (None: nobody can take over) and queue a ticket goes to, and what the bot should say."""

    connection: Connection | None
    queue: str = ""
    route_id: Any = None  # the HandoffRoute that matched; None for the channel's default
    route_name: str = ""
    fallback_used: bool = False  # the primary connection's breaker was open (or it is disabled)
    outside_hours: bool = False
    next_open: datetime | None = None  # when people answer again (UTC), when outside hours


def handoff_route(
    *, channel: ChannelInfo, conversation: Conversation, intent: str, now: datetime
) -> RouteDecision:
    """The route for handing `conversation` off now. Call inside the tenant's context."""
    connection = actions.ticket_connection(preferred_id=channel.ticket_connection_id)
    return RouteDecision(connection=connection)
