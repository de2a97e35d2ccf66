"""handoff_route: rules tried by position, every non-empty condition must match (a language matches its
variants), fallback when the primary is disabled or its breaker (real, in Redis) is open, the channel's
default without a match, business hours on the decision; other tenants' rules never apply."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from apps.chat.models import BusinessHours, Conversation, HandoffRoute
from apps.chat.principal import ChannelInfo
from apps.chat.services.routing import RouteDecision, handoff_route, locale_matches
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.resilience import breaker_for
from apps.tenants.models import Tenant
from tests.fixtures.integrations import offline_connection

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)  # a Wednesday


def channel(kind: str = "web", ticket_connection_id: Any = None, region: str = "eu") -> ChannelInfo:
    return ChannelInfo(
        id=uuid.uuid4(),
        kind=kind,
        name="Site",
        default_locale="en",
        allowed_actions=("handoff",),
        knowledge_base_id=None,
        content_region=region,
        ticket_connection_id=ticket_connection_id,
        lead_connection_id=None,
    )


def route(tenant: Tenant, name: str, connection: Connection, position: int, **kwargs: Any) -> HandoffRoute:
    return HandoffRoute.objects.create(
        tenant=tenant, name=name, connection_id=connection.pk, position=position, **kwargs
    )


def decide(
    tenant: Tenant,
    *,
    region: str = "eu",
    locale: str = "en",
    intent: str = "handoff",
    kind: str = "web",
    default: Any = None,
    now: datetime = NOW,
) -> RouteDecision:
    conversation = Conversation(channel_kind=kind, locale=locale, region=region)
    with tenant_context(tenant):
        return handoff_route(
            channel=channel(kind, default), conversation=conversation, intent=intent, now=now
        )


def open_breaker(connection: Connection) -> None:
    breaker = breaker_for(connection)
    for _ in range(10):
        breaker.record_failure()
    assert breaker.state().state == "open"


def test_first_matching_route_by_position_wins(
    tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection, sf_a: Connection
) -> None:
    route(tenant_a, "catch-all", sf_a, 9, queue="Everyone")
    route(tenant_a, "DACH", snow_a, 1, regions=["eu"], locales=["de"], queue="DACH Support")
    route(tenant_a, "US sales", hubspot_a, 2, regions=["us"], intents=["capture_lead"], queue="Sales")
    dach = decide(tenant_a, locale="de-AT")
    assert (dach.connection, dach.queue, dach.route_name, dach.fallback_used) == (
        snow_a,
        "DACH Support",
        "DACH",
        False,
    )
    assert decide(tenant_a, region="us", intent="capture_lead").connection == hubspot_a
    # Every non-empty list must match: the US route needs the intent too, so the catch-all takes it.
    other = decide(tenant_a, region="us", intent="handoff")
    assert (other.connection, other.queue, other.route_name) == (sf_a, "Everyone", "catch-all")


def test_language_matching() -> None:
    assert locale_matches("de", "de-AT") and locale_matches("de", "de") and locale_matches("de-AT", "de-at")
    assert not locale_matches("de-AT", "de") and not locale_matches("de-AT", "de-CH")
    assert not locale_matches("de", "dsb")


def test_conditions_on_kind_and_disabled_routes(
    tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection
) -> None:
    route(tenant_a, "WhatsApp", hubspot_a, 0, channel_kinds=["whatsapp"])
    route(tenant_a, "Off", hubspot_a, 1, enabled=False)
    route(tenant_a, "Rest", snow_a, 2)
    assert decide(tenant_a, kind="whatsapp").connection == hubspot_a
    assert decide(tenant_a, kind="web").connection == snow_a


def test_empty_region_of_the_conversation_is_the_channels(tenant_a: Tenant, snow_a: Connection) -> None:
    route(tenant_a, "EU", snow_a, 0, regions=["eu"])
    conversation = Conversation(channel_kind="web", locale="en", region="")
    with tenant_context(tenant_a):
        decision = handoff_route(channel=channel(region="eu"), conversation=conversation, intent="x", now=NOW)
    assert decision.route_name == "EU"


def test_no_rule_keeps_the_channels_ticket_connection(
    tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection
) -> None:
    assert decide(tenant_a, default=hubspot_a.pk) == RouteDecision(connection=hubspot_a)
    # No channel connection either: the first enabled ticketing connection by preference (ServiceNow).
    assert decide(tenant_a).connection == snow_a
    route(tenant_a, "US only", snow_a, 0, regions=["us"])
    assert decide(tenant_a, default=hubspot_a.pk).connection == hubspot_a


def test_open_breaker_uses_the_fallback(tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection) -> None:
    route(tenant_a, "EU", snow_a, 0, queue="L1", fallback_connection_id=hubspot_a.pk, fallback_queue="backup")
    assert decide(tenant_a).connection == snow_a
    open_breaker(snow_a)
    decision = decide(tenant_a)
    assert (decision.connection, decision.queue, decision.fallback_used) == (hubspot_a, "backup", True)


def test_disabled_primary_uses_the_fallback(
    tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection
) -> None:
    route(tenant_a, "EU", snow_a, 0, fallback_connection_id=hubspot_a.pk)
    with tenant_context(tenant_a):
        Connection.objects.filter(pk=snow_a.pk).update(enabled=False)
    decision = decide(tenant_a)
    assert (decision.connection, decision.fallback_used) == (hubspot_a, True)


def test_open_breaker_without_fallback_keeps_the_primary(tenant_a: Tenant, snow_a: Connection) -> None:
    route(tenant_a, "EU", snow_a, 0, queue="L1")
    open_breaker(snow_a)
    decision = decide(tenant_a)
    assert (decision.connection, decision.queue, decision.fallback_used) == (snow_a, "L1", False)


def test_matching_route_without_usable_connection_falls_back_to_the_channel(
    tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection
) -> None:
    route(tenant_a, "EU", snow_a, 0)
    with tenant_context(tenant_a):
        Connection.objects.filter(pk=snow_a.pk).update(enabled=False)
    decision = decide(tenant_a, default=hubspot_a.pk)
    assert (decision.connection, decision.route_id) == (hubspot_a, None)


def test_outside_hours_on_the_decision(tenant_a: Tenant, snow_a: Connection) -> None:
    hours = BusinessHours.objects.create(
        tenant=tenant_a, name="Berlin", timezone="Europe/Berlin", weekly={"wed": [["09:00", "17:00"]]}
    )
    route(tenant_a, "EU", snow_a, 0, business_hours=hours)
    inside = decide(tenant_a, now=datetime(2026, 6, 3, 10, tzinfo=UTC))  # 12:00 CEST
    assert (inside.outside_hours, inside.next_open) == (False, None)
    evening = decide(tenant_a, now=datetime(2026, 6, 3, 16, tzinfo=UTC))  # 18:00 CEST
    assert evening.connection == snow_a  # the ticket is still opened
    assert (evening.outside_hours, evening.next_open) == (True, datetime(2026, 6, 10, 7, tzinfo=UTC))


def test_other_tenants_rules_never_apply(
    tenant_a: Tenant, tenant_b: Tenant, snow_a: Connection, hubspot_a: Connection
) -> None:
    snow_b = offline_connection(tenant_b, "servicenow", name="B")
    HandoffRoute.objects.create(tenant=tenant_b, name="B", connection_id=snow_b.pk, position=0)
    # Even a rule of B naming A's connection id is not A's rule.
    HandoffRoute.objects.create(tenant=tenant_b, name="B2", connection_id=hubspot_a.pk, position=0)
    decision = decide(tenant_a)
    assert (decision.connection, decision.route_id) == (snow_a, None)
    with tenant_context(tenant_b):
        b = handoff_route(
            channel=channel(),
            conversation=Conversation(channel_kind="web", locale="en", region="us"),
            intent="handoff",
            now=NOW,
        )
    assert b.connection is not None and b.connection.pk == snow_b.pk


def test_a_route_naming_another_tenants_connection_falls_through(
    tenant_a: Tenant, tenant_b: Tenant, snow_a: Connection
) -> None:
    snow_b = offline_connection(tenant_b, "servicenow", name="B")
    HandoffRoute.objects.create(tenant=tenant_a, name="bad", connection_id=snow_b.pk, position=0)
    decision = decide(tenant_a)
    assert decision.connection == snow_a and decision.route_id is None


def test_malformed_stored_hours_never_fail_a_handoff(tenant_a: Tenant, snow_a: Connection) -> None:
    hours = BusinessHours.objects.create(
        tenant=tenant_a, name="broken", timezone="Not/AZone", weekly={"mon": "all day"}
    )
    route(tenant_a, "EU", snow_a, 0, business_hours=hours)
    decision = decide(tenant_a)
    assert (decision.connection, decision.outside_hours, decision.next_open) == (snow_a, False, None)
    BusinessHours.objects.filter(pk=hours.pk).update(timezone="UTC")
    assert decide(tenant_a).connection == snow_a  # a malformed week is left out, not guessed
