"""Console pages of handoff routing: the ordered rules (move up/down), route and business-hours forms with
field errors, deletes behind a confirmation, the preview, the live handoff view (filters, paging, fixed query
count, transcript links); every change audited; viewer 403, other tenant 404 on every page and object."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.chat.models import BusinessHours, Conversation, Handoff, HandoffRoute
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.tenants.models import Region, Role, Tenant
from tests.factories import TenantFactory
from tests.fixtures.auth import login_verified
from tests.fixtures.chat import web_channel

pytestmark = pytest.mark.django_db

WEEKLY = {"mon": [["09:00", "17:00"]]}


def url(name: str, tenant: Tenant, pk: Any = None) -> str:
    kwargs: dict[str, Any] = {"tenant_slug": tenant.slug}
    if pk is not None:
        kwargs["pk"] = pk
    return reverse(f"chat:{name}", kwargs=kwargs)


def audit_actions(tenant: Tenant) -> list[str]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


@pytest.fixture
def charlie_role() -> Role:
    return Role.ADMIN


@pytest.fixture
def charlie_client(charlie: Any) -> Client:
    client = Client()
    login_verified(client, charlie)
    return client


@pytest.fixture
def bob_client(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


@pytest.fixture
def hours_a(tenant_a: Tenant) -> BusinessHours:
    return BusinessHours.objects.create(
        tenant=tenant_a, name="Berlin", timezone="Europe/Berlin", weekly=WEEKLY
    )


@pytest.fixture
def route_a(tenant_a: Tenant, snow_a: Connection, hours_a: BusinessHours) -> HandoffRoute:
    return HandoffRoute.objects.create(
        tenant=tenant_a,
        name="DACH",
        locales=["de"],
        connection_id=snow_a.pk,
        queue="DACH L1",
        business_hours=hours_a,
    )


def test_empty_states_and_navigation(alice_client: Client, tenant_a: Tenant) -> None:
    page = alice_client.get(url("route-list", tenant_a))
    assert page.status_code == 200
    text = page.content.decode()
    assert "No routes yet" in text and "No business hours yet" in text
    assert "No ticketing connection" in text
    assert url("route-list", tenant_a) in text and url("handoff-list", tenant_a) in text  # navigation
    assert "No handoffs" in alice_client.get(url("handoff-list", tenant_a)).content.decode()


def test_create_route_with_field_errors_then_saved_and_audited(
    alice_client: Client, tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection, hours_a: BusinessHours
) -> None:
    form = alice_client.get(url("route-create", tenant_a)).content.decode()
    assert "ServiceNow EU (servicenow)" in form and "Berlin" in form
    bad = {
        "name": "DACH",
        "locales": "de xx_YY",
        "connection_id": str(snow_a.pk),
        "fallback_connection_id": str(snow_a.pk),
        "enabled": "on",
    }
    response = alice_client.post(url("route-create", tenant_a), bad)
    assert response.status_code == 400
    text = response.content.decode()
    assert "xx_YY" in text and "The fallback must be another connection." in text
    assert not HandoffRoute.objects.exists()
    good = {
        **bad,
        "locales": "de, de-AT",
        "regions": ["eu"],
        "intents": ["handoff"],
        "channel_kinds": ["web"],
        "fallback_connection_id": str(hubspot_a.pk),
        "fallback_queue": "Backup",
        "queue": "DACH L1",
        "business_hours_id": str(hours_a.pk),
    }
    response = alice_client.post(url("route-create", tenant_a), good)
    assert response.status_code == 302
    route = HandoffRoute.objects.get(tenant=tenant_a)
    assert (route.locales, route.regions, route.fallback_connection_id, route.business_hours_id) == (
        ["de", "de-AT"],
        ["eu"],
        hubspot_a.pk,
        hours_a.pk,
    )
    listing = alice_client.get(url("route-list", tenant_a)).content.decode()
    assert "DACH" in listing and "DACH L1" in listing and "HubSpot" in listing
    edit = alice_client.post(url("route-edit", tenant_a, route.pk), {**good, "queue": "DACH L2"})
    assert edit.status_code == 302
    route.refresh_from_db()
    assert route.queue == "DACH L2"
    assert audit_actions(tenant_a)[-2:] == ["handoff_route.created", "handoff_route.updated"]


def test_move_and_delete_with_confirmation(
    alice_client: Client, tenant_a: Tenant, snow_a: Connection, route_a: HandoffRoute
) -> None:
    second = HandoffRoute.objects.create(tenant=tenant_a, name="Rest", connection_id=snow_a.pk, position=5)
    assert alice_client.post(url("route-move", tenant_a, second.pk), {"direction": "up"}).status_code == 302
    names = list(
        HandoffRoute.objects.filter(tenant=tenant_a).order_by("position").values_list("name", flat=True)
    )
    assert names == ["Rest", "DACH"]
    assert alice_client.get(url("route-move", tenant_a, second.pk)).status_code == 405
    confirm = alice_client.get(url("route-delete", tenant_a, route_a.pk))
    assert confirm.status_code == 200 and "Delete route" in confirm.content.decode()
    assert alice_client.post(url("route-delete", tenant_a, route_a.pk)).status_code == 400
    assert HandoffRoute.objects.filter(pk=route_a.pk).exists()
    assert alice_client.post(url("route-delete", tenant_a, route_a.pk), dict(CONFIRMED)).status_code == 302
    assert not HandoffRoute.objects.filter(pk=route_a.pk).exists()
    assert audit_actions(tenant_a)[-2:] == ["handoff_route.moved", "handoff_route.deleted"]


def test_business_hours_grid(alice_client: Client, tenant_a: Tenant, route_a: HandoffRoute) -> None:
    data = {
        "name": "New York",
        "timezone": "America/New_York",
        "mon": "09:00-12:30, 13:30-17:00",
        "fri": "22:00-06:00",
        "tue": "nine to five",
        "holidays": "2026-11-26\nnot-a-date",
    }
    response = alice_client.post(url("hours-create", tenant_a), data)
    assert response.status_code == 400
    assert "Write intervals as 09:00-17:00" in response.content.decode()
    response = alice_client.post(url("hours-create", tenant_a), {**data, "tue": ""})
    assert response.status_code == 400
    text = response.content.decode()
    assert "crosses midnight" in text and "not-a-date" in text
    response = alice_client.post(
        url("hours-create", tenant_a),
        {**data, "tue": "", "fri": "22:00-24:00", "sat": "00:00-06:00", "holidays": "2026-11-26"},
    )
    assert response.status_code == 302
    hours = BusinessHours.objects.get(tenant=tenant_a, name="New York")
    assert hours.weekly == {
        "mon": [["09:00", "12:30"], ["13:30", "17:00"]],
        "fri": [["22:00", "24:00"]],
        "sat": [["00:00", "06:00"]],
    }
    page = alice_client.get(url("hours-edit", tenant_a, hours.pk)).content.decode()
    assert "09:00-12:30, 13:30-17:00" in page
    berlin = route_a.business_hours
    assert berlin is not None
    confirm = alice_client.get(url("hours-delete", tenant_a, berlin.pk)).content.decode()
    assert "DACH" in confirm  # names the routes that use them
    assert alice_client.post(url("hours-delete", tenant_a, berlin.pk), dict(CONFIRMED)).status_code == 302
    route_a.refresh_from_db()
    assert route_a.business_hours_id is None
    assert audit_actions(tenant_a)[-2:] == ["business_hours.created", "business_hours.deleted"]


def test_preview(alice_client: Client, tenant_a: Tenant, tenant_b: Tenant, route_a: HandoffRoute) -> None:
    query = {
        "region": "eu",
        "locale": "de-AT",
        "intent": "handoff",
        "channel_kind": "web",
        "at": "2026-03-27T18:00",
        "timezone": "Europe/Berlin",
    }
    response = alice_client.get(url("route-preview", tenant_a), query)
    assert response.status_code == 200
    text = response.content.decode()
    assert "DACH" in text and "ServiceNow EU" in text and "DACH L1" in text
    assert "Closed" in text and "2026-03-30 09:00 (Europe/Berlin), 2026-03-30 07:00 UTC" in text
    response = alice_client.get(url("route-preview", tenant_a), {**query, "timezone": "Mars/Base"})
    assert response.status_code == 400 and "Unknown time zone" in response.content.decode()
    other = alice_client.get(url("route-preview", tenant_a), {**query, "locale": "en"}).content.decode()
    assert "No route matches" in other
    # A channel: its locale (de) fills the blank one; the route list offers the tenant's channels only.
    channel = web_channel(tenant_a, name="Shop", default_locale="de")
    other_tenant = web_channel(tenant_b, name="Elsewhere")
    listing = alice_client.get(url("route-list", tenant_a)).content.decode()
    assert "Shop" in listing and "Elsewhere" not in listing
    with_channel = alice_client.get(
        url("route-preview", tenant_a), {**query, "locale": "", "channel": str(channel.pk)}
    )
    assert with_channel.status_code == 200 and "DACH L1" in with_channel.content.decode()
    refused = alice_client.get(url("route-preview", tenant_a), {**query, "channel": str(other_tenant.pk)})
    assert refused.status_code == 400


def _handoffs(tenant: Tenant, connection: Connection, n: int, **kwargs: Any) -> list[Handoff]:
    made = []
    with tenant_context(tenant):
        for i in range(n):
            conversation = Conversation.objects.create(
                channel_id=kwargs.get("channel_id", uuid.uuid4()),
                channel_kind="web",
                locale="de",
                region="eu",
                status="handoff",
            )
            made.append(
                Handoff.objects.create(
                    conversation=conversation,
                    connection_id=connection.pk,
                    queue="DACH L1",
                    state="open",
                    ticket_number=f"INC00{i:05d}",
                    first_agent_reply_at=timezone.now() + timedelta(minutes=3) if i % 2 else None,
                )
            )
    return made


def test_live_handoffs_filters_links_and_fixed_queries(
    alice_client: Client, tenant_a: Tenant, region_eu: Region, snow_a: Connection, hubspot_a: Connection
) -> None:
    _handoffs(tenant_a, snow_a, 2)
    neighbour = TenantFactory.create(slug="tenant-c", home_region=region_eu)  # same region database as A
    with tenant_context(neighbour):  # its handoffs, on a connection id of A's: never shown to A
        conversation = Conversation.objects.create(
            channel_id=uuid.uuid4(), channel_kind="web", locale="en", region="eu"
        )
        Handoff.objects.create(
            conversation=conversation, connection_id=snow_a.pk, state="open", ticket_number="INC-OF-B"
        )
    page = alice_client.get(url("handoff-list", tenant_a))
    text = page.content.decode()
    assert "INC0000000" in text and "INC0000001" in text and "DACH L1" in text and "ServiceNow EU" in text
    assert "INC-OF-B" not in text
    handoff = Handoff.all_tenants.using("region_eu").filter(ticket_number="INC0000000").first()
    assert handoff is not None
    assert url("conversation-detail", tenant_a, handoff.conversation_id) in text
    with (
        CaptureQueriesContext(connections["region_eu"]) as few,
        CaptureQueriesContext(connections["default"]) as few_c,
    ):
        alice_client.get(url("handoff-list", tenant_a))
    _handoffs(tenant_a, hubspot_a, 20)
    with (
        CaptureQueriesContext(connections["region_eu"]) as many,
        CaptureQueriesContext(connections["default"]) as many_c,
    ):
        response = alice_client.get(url("handoff-list", tenant_a))
    assert response.content.decode().count("<tr>") == 23  # header + 22 rows
    assert (len(many), len(many_c)) == (len(few), len(few_c))
    filtered = alice_client.get(
        url("handoff-list", tenant_a), {"connection": str(snow_a.pk)}
    ).content.decode()
    assert filtered.count("<tr>") == 3
    resolved = alice_client.get(url("handoff-list", tenant_a), {"state": "resolved"}).content.decode()
    assert "No handoffs" in resolved
    assert alice_client.get(url("handoff-list", tenant_a), {"state": "bogus", "page": "x"}).status_code == 200


def test_live_view_polls_its_rows(alice_client: Client, tenant_a: Tenant, snow_a: Connection) -> None:
    page = alice_client.get(url("handoff-list", tenant_a), {"state": "open"}).content.decode()
    assert 'id="handoff-rows"' in page and 'hx-trigger="every 15s"' in page
    _handoffs(tenant_a, snow_a, 1)
    fragment = alice_client.get(url("handoff-list", tenant_a), {"state": "open"}, HTTP_HX_REQUEST="true")
    text = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in text
    assert text.lstrip().startswith('<div id="handoff-rows"') and "INC0000000" in text
    assert 'hx-get="/t/tenant-a/handoffs/?state=open"' in text  # the filters stay while it polls


def test_paginated(alice_client: Client, tenant_a: Tenant, snow_a: Connection) -> None:
    _handoffs(tenant_a, snow_a, 27)
    first = alice_client.get(url("handoff-list", tenant_a)).content.decode()
    assert first.count("<tr>") == 26 and "Page 1 of 2" in first
    assert alice_client.get(url("handoff-list", tenant_a), {"page": 2}).content.decode().count("<tr>") == 3


def test_other_tenant_gets_404_and_viewer_403(
    charlie_client: Client, bob_client: Client, tenant_a: Tenant, tenant_b: Tenant, route_a: HandoffRoute
) -> None:
    hours = route_a.business_hours
    assert hours is not None
    object_pages = [
        url("route-edit", tenant_a, route_a.pk),
        url("route-delete", tenant_a, route_a.pk),
        url("hours-edit", tenant_a, hours.pk),
        url("hours-delete", tenant_a, hours.pk),
    ]
    pages = [
        url(n, tenant_a)
        for n in ("route-list", "route-create", "route-preview", "hours-create", "handoff-list")
    ]
    for page in [*pages, *object_pages]:
        assert charlie_client.get(page).status_code == 404, page
        assert charlie_client.post(page, dict(CONFIRMED)).status_code in (404, 405), page
        assert bob_client.get(page).status_code == 403, page
    assert (
        charlie_client.post(url("route-move", tenant_a, route_a.pk), {"direction": "up"}).status_code == 404
    )
    # A's objects under B's own slug do not exist either.
    for name, pk in (
        ("route-edit", route_a.pk),
        ("route-delete", route_a.pk),
        ("hours-edit", hours.pk),
        ("hours-delete", hours.pk),
        ("route-move", route_a.pk),
    ):
        assert (
            charlie_client.post(url(name, tenant_b, pk), {**CONFIRMED, "direction": "up"}).status_code == 404
        )
    assert (
        HandoffRoute.objects.filter(pk=route_a.pk).exists()
        and BusinessHours.objects.filter(pk=hours.pk).exists()
    )


def test_route_list_in_fixed_queries(
    alice_client: Client, tenant_a: Tenant, snow_a: Connection, hubspot_a: Connection, route_a: HandoffRoute
) -> None:
    def count() -> tuple[int, int]:
        with (
            CaptureQueriesContext(connections["default"]) as control,
            CaptureQueriesContext(connections["region_eu"]) as region,
        ):
            assert alice_client.get(url("route-list", tenant_a)).status_code == 200
        return len(control), len(region)

    few = count()
    for i in range(8):
        hours = BusinessHours.objects.create(
            tenant=tenant_a, name=f"H{i}", timezone="UTC", weekly={"tue": [["08:00", "12:00"]]}
        )
        HandoffRoute.objects.create(
            tenant=tenant_a, name=f"R{i}", connection_id=snow_a.pk, fallback_connection_id=hubspot_a.pk,
            business_hours=hours, position=i + 1,
        )  # fmt: skip
    assert count() == few
