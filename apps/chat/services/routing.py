"""Where a handoff's ticket goes (issue 18): the tenant's routing rules, business hours and fallbacks.

`handoff_route` is called when a conversation is handed off. The tenant's enabled routes are tried by
position; the first whose non-empty condition lists all match (region, locale or its language, intent,
channel kind) wins and names the connection and queue. When that connection is disabled or its circuit
breaker is open, the route's fallback connection and queue take the ticket. Without a matching route the
hub does what it always did: the channel's ticket connection, or the first enabled ticketing connection.
Business hours never stop a ticket: outside them it is still opened, and the decision says when people
answer again so the bot can tell the customer.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from apps.chat.models import BusinessHours, Channel, Conversation, HandoffRoute
from apps.chat.principal import ChannelInfo
from apps.chat.services import actions
from apps.chat.services.business_hours import Schedule, clean_timezone
from apps.core.context import current_tenant, tenant_context
from apps.core.errors import ValidationFailed
from apps.integrations.models import Connection
from apps.integrations.resilience import breaker_for

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """What routing looks at, taken from a conversation or typed into the console's preview."""

    region: str
    locale: str
    intent: str
    channel_kind: str


def locale_matches(wanted: str, locale: str) -> bool:
    """A rule's locale matches the same locale, and a language-only rule ("de") every variant ("de-AT")."""
    wanted, locale = wanted.lower(), locale.lower()
    return wanted == locale or ("-" not in wanted and locale.split("-", 1)[0] == wanted)


def route_matches(route: HandoffRoute, query: RouteQuery) -> bool:
    """Every non-empty condition list of `route` names the query's value (an empty list matches anything)."""
    if route.regions and query.region.lower() not in {r.lower() for r in route.regions}:
        return False
    if route.locales and not any(locale_matches(w, query.locale) for w in route.locales):
        return False
    if route.intents and query.intent not in route.intents:
        return False
    return not (route.channel_kinds and query.channel_kind not in route.channel_kinds)


def _usable(connection: Connection | None) -> bool:
    """Enabled, and its breaker not open (half-open: the next delivery probes, the vendor may be back).
    Redis unreachable: keep the primary (the outbox delivers when it can); a handoff never fails here."""
    if connection is None or not connection.enabled:
        return False
    try:
        return breaker_for(connection).state().state != "open"
    except (RedisError, OSError) as exc:
        logger.warning("handoff routing: breaker state unavailable: %s", type(exc).__name__)
        return True


def hours_state(hours: BusinessHours | None, now: datetime) -> tuple[bool, datetime | None]:
    """(outside hours, next opening in UTC) of a route's business hours; no hours: always open."""
    if hours is None:
        return False, None
    try:
        schedule = Schedule.of(
            timezone=hours.timezone, weekly=hours.weekly or {}, holidays=hours.holidays or []
        )
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, AttributeError):
        # Written around the services (they refuse this): answer as always open rather than fail the handoff.
        logger.warning("handoff routing: business hours %s are malformed", hours.pk)
        return False, None
    is_open, next_open = schedule.state(now)
    return (not is_open), next_open


def enabled_routes(*, tenant_id: Any) -> list[HandoffRoute]:
    """The tenant's enabled routes in the order they are tried, with their business hours (one query)."""
    return list(
        HandoffRoute.objects.filter(tenant_id=tenant_id, enabled=True)
        .select_related("business_hours")
        .order_by("position", "name")
    )


def _decide(route: HandoffRoute, *, now: datetime) -> RouteDecision | None:
    """The decision of a matching route; None when neither its connection nor its fallback exists enabled."""
    ids = [route.connection_id, *([route.fallback_connection_id] if route.fallback_connection_id else [])]
    found = {c.pk: c for c in Connection.objects.filter(pk__in=ids)}
    primary = found.get(route.connection_id)
    fallback = found.get(route.fallback_connection_id) if route.fallback_connection_id else None
    outside, next_open = hours_state(route.business_hours, now)
    base = RouteDecision(
        connection=None, route_id=route.pk, route_name=route.name, outside_hours=outside, next_open=next_open
    )
    if _usable(primary):
        return replace(base, connection=primary, queue=route.queue)
    if fallback is not None and fallback.enabled:
        return replace(base, connection=fallback, queue=route.fallback_queue, fallback_used=True)
    if primary is not None and primary.enabled:  # open breaker, no fallback: the outbox waits for it
        return replace(base, connection=primary, queue=route.queue)
    return None


def route_decide(
    *,
    query: RouteQuery,
    now: datetime,
    default_connection_id: Any = None,
    routes: Sequence[HandoffRoute] | None = None,
) -> RouteDecision:
    """The decision for `query` at `now` in the current tenant (the preview's entry point too)."""
    if routes is None:
        routes = enabled_routes(tenant_id=current_tenant().id)
    for route in routes:
        if route_matches(route, query):
            decision = _decide(route, now=now)
            if decision is not None:
                return decision
            break  # the matching route's connections are gone or disabled: the channel's default
    return RouteDecision(connection=actions.ticket_connection(preferred_id=default_connection_id))


def handoff_route(
    *, channel: ChannelInfo, conversation: Conversation, intent: str, now: datetime
) -> RouteDecision:
    """The route for handing `conversation` off now. Call inside the tenant's context."""
    query = RouteQuery(
        region=conversation.region or channel.content_region,
        locale=conversation.locale or channel.default_locale,
        intent=intent,
        channel_kind=conversation.channel_kind or channel.kind,
    )
    return route_decide(query=query, now=now, default_connection_id=channel.ticket_connection_id)


@dataclass(frozen=True, slots=True)
class RoutePreview:
    """What the console's and the API's "which route would this conversation take" shows."""

    query: RouteQuery
    at: datetime  # the instant asked about (UTC)
    decision: RouteDecision
    #: The matched route's primary connection when the fallback took the ticket (to say what was skipped).
    primary: Connection | None = None
    zone: str = "UTC"  # the zone the instant was given in, for showing the next opening locally

    @property
    def next_open_local(self) -> datetime | None:
        nxt = self.decision.next_open
        return nxt.astimezone(zoneinfo.ZoneInfo(self.zone)) if nxt is not None else None


def route_preview(
    *, tenant: Any, query: RouteQuery, at: datetime, zone: str = "UTC", channel: Channel | None = None
) -> RoutePreview:
    """The decision a conversation like `query` would get at `at` (aware), read in `tenant`'s context.

    With `channel` (one of the tenant's), blank query fields take the channel's values and the default (no
    matching route) is its ticket connection, exactly as for its conversations; without one the default is
    the first enabled ticketing connection."""
    if channel is not None:
        query = RouteQuery(
            region=query.region or channel.content_region or tenant.region_code,
            locale=query.locale or channel.default_locale,
            intent=query.intent,
            channel_kind=query.channel_kind or channel.kind,
        )
    default = channel.ticket_connection_id if channel is not None else None
    with tenant_context(tenant):
        decision = route_decide(query=query, now=at, default_connection_id=default)
        primary = None
        if decision.fallback_used and decision.route_id is not None:
            route = HandoffRoute.objects.filter(pk=decision.route_id).first()
            if route is not None:
                primary = Connection.objects.filter(pk=route.connection_id).first()
    return RoutePreview(query=query, at=at.astimezone(UTC), decision=decision, primary=primary, zone=zone)


def preview_instant(*, at: str, zone: str, now: datetime | None = None) -> datetime:
    """The instant a preview asks about: `at` (ISO 8601; local time in `zone` without an offset) or now.
    Raise ValidationFailed with field errors for an unknown zone or a malformed instant."""
    errors: dict[str, list[str]] = {}
    zone = clean_timezone(zone or "UTC", errors)
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    if not at.strip():
        return (now or datetime.now(UTC)).astimezone(UTC)
    try:
        value = datetime.fromisoformat(at.strip())
    except ValueError:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"at": [_("Give a date and time such as 2026-03-30T09:00.")]},
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return value.astimezone(UTC)
