"""Handoff routes, business hours and the preview over the management API: the generic resource checks
(viewer 403, other tenant 404, anonymous 401, both token and session), validation as field errors, audit,
moves, the preview's decision and the OpenAPI document."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.chat.models import BusinessHours, HandoffRoute
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.resilience import breaker_for
from apps.tenants.models import Tenant
from tests.fixtures.api import APIResourceTests
from tests.fixtures.chat import web_channel
from tests.fixtures.integrations import offline_connection

pytestmark = pytest.mark.django_db

WEEKLY = {"mon": [["09:00", "17:00"]], "tue": [["09:00", "17:00"]]}


def routes_url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/handoff-routes/{suffix}"


def hours_url(tenant: Tenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.slug}/business-hours/{suffix}"


class TestRoutesAPI(APIResourceTests):
    list_view = "routing-api:route-list"
    detail_view = "routing-api:route-detail"
    actions = ("routing-api:route-move",)
    instance_data = {"name": "DACH", "regions": ["eu"], "locales": ["de"], "queue": "L1"}
    update_data = {"queue": "L2", "enabled": False, "intents": ["handoff"]}
    viewer_reads = False

    @pytest.fixture(autouse=True)
    def _create_data(self, snow_a: Connection) -> None:
        # The connection id exists only once the fixture ran: set per test instance.
        self.create_data = {"name": "US", "regions": ["us"], "connection_id": str(snow_a.pk), "queue": "Q"}  # type: ignore[misc]

    @pytest.fixture
    def instance(self, tenant_a: Tenant, snow_a: Connection) -> HandoffRoute:
        return HandoffRoute.objects.create(
            tenant=tenant_a, name="DACH", regions=["eu"], locales=["de"], queue="L1", connection_id=snow_a.pk
        )


class TestBusinessHoursAPI(APIResourceTests):
    list_view = "routing-api:hours-list"
    detail_view = "routing-api:hours-detail"
    instance_data = {"name": "Berlin", "timezone": "Europe/Berlin", "weekly": WEEKLY}
    create_data = {
        "name": "New York",
        "timezone": "America/New_York",
        "weekly": WEEKLY,
        "holidays": ["2026-11-26"],
    }
    update_data = {"holidays": ["2026-12-25"], "timezone": "Europe/Vienna"}
    viewer_reads = False

    @pytest.fixture
    def instance(self, tenant_a: Tenant) -> BusinessHours:
        return BusinessHours.objects.create(
            tenant=tenant_a, name="Berlin", timezone="Europe/Berlin", weekly=WEEKLY
        )


def test_route_validation_is_field_errors(alice_api: APIClient, tenant_a: Tenant, tenant_b: Tenant) -> None:
    other = offline_connection(tenant_b, "servicenow", name="B")
    response = alice_api.post(
        routes_url(tenant_a),
        {
            "name": "x",
            "regions": ["mars"],
            "locales": ["english"],
            "intents": ["dance"],
            "channel_kinds": ["fax"],
            "connection_id": str(other.pk),
            "colour": "red",
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"colour": ["Unknown field."]}
    body = {"name": "x", "regions": ["mars"], "locales": ["english"], "intents": ["dance"]}
    response = alice_api.post(routes_url(tenant_a), {**body, "connection_id": str(other.pk)}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"regions", "locales", "intents", "connection_id"}
    assert alice_api.post(routes_url(tenant_a), {"name": "x"}, format="json").json() == {
        "connection_id": ["This field is required."]
    }
    assert not HandoffRoute.objects.exists()


def test_hours_validation_is_field_errors(alice_api: APIClient, tenant_a: Tenant) -> None:
    response = alice_api.post(
        hours_url(tenant_a),
        {
            "name": "x",
            "timezone": "Europe/Nowhere",
            "weekly": {"mon": [["22:00", "06:00"], ["9", "10"]]},
            "holidays": ["2026-02-30"],
        },
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"timezone", "weekly", "holidays"}
    assert any("crosses midnight" in m for m in errors["weekly"]) and any(
        "HH:MM" in m for m in errors["weekly"]
    )
    assert alice_api.post(hours_url(tenant_a), ["not", "a", "dict"], format="json").status_code == 400
    assert alice_api.post(hours_url(tenant_a), "garbage", content_type="application/json").status_code == 400
    assert not BusinessHours.objects.exists()


def test_move_and_audit(alice_api: APIClient, tenant_a: Tenant, snow_a: Connection) -> None:
    ids = [
        alice_api.post(
            routes_url(tenant_a), {"name": n, "connection_id": str(snow_a.pk)}, format="json"
        ).json()["id"]
        for n in ("one", "two", "three")
    ]
    response = alice_api.post(routes_url(tenant_a, f"{ids[2]}/move/"), {"offset": -2}, format="json")
    assert response.status_code == 200 and response.json()["position"] == 0
    listed = alice_api.get(routes_url(tenant_a)).json()["results"]
    assert [r["name"] for r in listed] == ["three", "one", "two"]
    assert [r["position"] for r in listed] == [0, 1, 2]
    assert (
        alice_api.post(routes_url(tenant_a, f"{ids[0]}/move/"), {"offset": "up"}, format="json").status_code
        == 400
    )
    with tenant_context(tenant_a):
        actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-4:] == ["handoff_route.created"] * 3 + ["handoff_route.moved"]


def test_preview(
    alice_api: APIClient, tenant_a: Tenant, tenant_b: Tenant, snow_a: Connection, hubspot_a: Connection
) -> None:
    hours = alice_api.post(
        hours_url(tenant_a), {"name": "NY", "timezone": "America/New_York", "weekly": WEEKLY}, format="json"
    ).json()
    alice_api.post(
        routes_url(tenant_a),
        {
            "name": "US",
            "regions": ["us"],
            "locales": ["en"],
            "connection_id": str(snow_a.pk),
            "queue": "US L1",
            "fallback_connection_id": str(hubspot_a.pk),
            "fallback_queue": "US backup",
            "business_hours_id": hours["id"],
        },
        format="json",
    )
    body = {"region": "us", "locale": "en-US", "intent": "handoff", "channel_kind": "web"}
    # Friday 6 March 2026, 18:00 in New York (EST): closed until Monday 09:00 EDT (after the DST change).
    at = {"at": "2026-03-06T18:00", "timezone": "America/New_York"}
    result = alice_api.post(routes_url(tenant_a, "preview/"), {**body, **at}, format="json").json()
    assert result["route"]["name"] == "US"
    assert (result["connection"]["name"], result["queue"], result["fallback_used"]) == (
        "ServiceNow EU",
        "US L1",
        False,
    )
    assert result["outside_hours"] is True
    assert result["next_open"] == "2026-03-09T13:00:00Z"
    assert result["next_open_local"] == "2026-03-09T09:00:00-04:00"
    breaker = breaker_for(snow_a)
    for _ in range(10):
        breaker.record_failure()
    result = alice_api.post(routes_url(tenant_a, "preview/"), {**body, **at}, format="json").json()
    assert (result["connection"]["name"], result["queue"], result["fallback_used"]) == (
        "HubSpot",
        "US backup",
        True,
    )
    assert result["primary_connection"]["name"] == "ServiceNow EU"
    # No match: the default (the first enabled ticketing connection), no route.
    result = alice_api.post(routes_url(tenant_a, "preview/"), {"region": "eu"}, format="json").json()
    assert result["route"] is None and result["connection"]["name"] == "ServiceNow EU"
    # With a channel: blank fields are the channel's, and its ticket connection is the default.
    channel = web_channel(tenant_a, name="Shop", ticket_connection_id=hubspot_a.pk, content_region="us")
    result = alice_api.post(
        routes_url(tenant_a, "preview/"), {"channel_id": str(channel.pk), "locale": "de"}, format="json"
    ).json()
    assert result["route"] is None and result["connection"]["name"] == "HubSpot"
    result = alice_api.post(
        routes_url(tenant_a, "preview/"),
        {"channel_id": str(channel.pk), "locale": "en", **at},
        format="json",
    ).json()
    assert result["route"]["name"] == "US"  # the channel's region (us) matched
    other = web_channel(tenant_b, name="B shop")
    bad = alice_api.post(routes_url(tenant_a, "preview/"), {"channel_id": str(other.pk)}, format="json")
    assert bad.status_code == 400 and bad.json() == {"channel_id": ["No such channel in this tenant."]}
    bad = alice_api.post(
        routes_url(tenant_a, "preview/"), {"at": "yesterday", "timezone": "Mars/Base"}, format="json"
    )
    assert bad.status_code == 400 and set(bad.json()) == {"timezone"}
    bad = alice_api.post(routes_url(tenant_a, "preview/"), {"at": "yesterday"}, format="json")
    assert bad.status_code == 400 and set(bad.json()) == {"at"}


def test_preview_refused_to_viewer_and_other_tenant(
    bob_api: APIClient, charlie_api: APIClient, tenant_a: Tenant, snow_a: Connection
) -> None:
    assert bob_api.post(routes_url(tenant_a, "preview/"), {}, format="json").status_code == 403
    response = charlie_api.post(routes_url(tenant_a, "preview/"), {}, format="json")
    assert response.status_code == 404
    assert APIClient().post(routes_url(tenant_a, "preview/"), {}, format="json").status_code == 401


def test_openapi_documents_routing(alice_api: APIClient) -> None:
    schema = alice_api.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/tenants/{slug}/handoff-routes/" in paths
    assert "/api/v1/tenants/{slug}/handoff-routes/preview/" in paths
    assert "/api/v1/tenants/{slug}/business-hours/{id}/" in paths
