"""Route and business-hours writes: field errors for everything malformed, the role checked, every change
audited, moves renumber positions."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from apps.audit.models import AuditEvent
from apps.chat.models import BusinessHours, HandoffRoute
from apps.chat.services.routes import (
    hours_create,
    hours_delete,
    hours_update,
    route_create,
    route_delete,
    route_move,
    route_update,
)
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from tests.fixtures.integrations import offline_connection

pytestmark = pytest.mark.django_db

HOURS = {"name": "Berlin", "timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "17:00"]]}}


def actions(tenant: Tenant) -> list[str]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def refused(call: Any, **kwargs: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        call(**kwargs)
    return caught.value.errors


def test_route_crud_is_audited(
    tenant_a: Tenant, alice: Any, snow_a: Connection, hubspot_a: Connection
) -> None:
    hours = hours_create(tenant=tenant_a, data=HOURS, actor=alice)
    route = route_create(
        tenant=tenant_a,
        data={
            "name": "DACH",
            "regions": ["eu"],
            "locales": ["de"],
            "intents": ["handoff"],
            "channel_kinds": ["web", "whatsapp"],
            "connection_id": str(snow_a.pk),
            "queue": " DACH ",
            "fallback_connection_id": str(hubspot_a.pk),
            "fallback_queue": "backup",
            "business_hours_id": str(hours.pk),
        },
        actor=alice,
    )
    assert (route.position, route.queue, route.business_hours_id) == (0, "DACH", hours.pk)
    second = route_create(tenant=tenant_a, data={"name": "Rest", "connection_id": snow_a.pk}, actor=alice)
    assert second.position == 1
    route_update(route=route, changes={"queue": "DACH L2", "enabled": False}, actor=alice)
    route.refresh_from_db()
    assert (route.queue, route.enabled, route.locales) == ("DACH L2", False, ["de"])
    route_move(route=second, offset=-1, actor=alice)
    assert list(HandoffRoute.objects.filter(tenant=tenant_a).values_list("name", "position")) == [
        ("Rest", 0),
        ("DACH", 1),
    ]
    route_delete(route=second, actor=alice)
    hours_update(hours=hours, changes={"holidays": ["2026-12-25"]}, actor=alice)
    hours_delete(hours=hours, actor=alice)
    route.refresh_from_db()
    assert route.business_hours_id is None
    assert actions(tenant_a)[-8:] == [
        "business_hours.created",
        "handoff_route.created",
        "handoff_route.created",
        "handoff_route.updated",
        "handoff_route.moved",
        "handoff_route.deleted",
        "business_hours.updated",
        "business_hours.deleted",
    ]


def test_route_field_errors(tenant_a: Tenant, tenant_b: Tenant, alice: Any, snow_a: Connection) -> None:
    tenant_a.enabled_locales = ["en", "de-AT"]
    tenant_a.save()
    other = offline_connection(tenant_b, "servicenow", name="B")
    sap = offline_connection(tenant_a, "sap", name="SAP")
    hours_b = hours_create(tenant=tenant_b, data=HOURS)
    errors = refused(
        route_create,
        tenant=tenant_a,
        data={
            "name": "",
            "position": -1,
            "regions": ["mars"],
            "locales": ["fr", "xx_YY"],
            "intents": ["dance"],
            "channel_kinds": ["fax"],
            "connection_id": other.pk,
            "fallback_connection_id": sap.pk,
            "business_hours_id": hours_b.pk,
        },
        actor=alice,
    )
    assert set(errors) == {
        "name",
        "position",
        "regions",
        "locales",
        "intents",
        "channel_kinds",
        "connection_id",
        "fallback_connection_id",
        "business_hours_id",
    }
    assert "No such connection" in errors["connection_id"][0]
    assert "cannot receive tickets" in errors["fallback_connection_id"][0]
    errors = refused(
        route_create,
        tenant=tenant_a,
        data={"name": "x", "locales": ["fr"], "connection_id": "not-a-uuid", "fallback_queue": "q"},
    )
    assert "Not a language of this tenant" in errors["locales"][0]
    assert set(errors) == {"locales", "connection_id", "fallback_queue"}
    # A language of an enabled locale is fine ("de" for "de-AT"); the fallback must differ.
    errors = refused(
        route_create,
        tenant=tenant_a,
        data={
            "name": "x",
            "locales": ["de"],
            "connection_id": snow_a.pk,
            "fallback_connection_id": snow_a.pk,
        },
    )
    assert set(errors) == {"fallback_connection_id"}
    route_create(tenant=tenant_a, data={"name": "x", "locales": ["de"], "connection_id": snow_a.pk})
    assert (
        "already exists"
        in refused(route_create, tenant=tenant_a, data={"name": "x", "connection_id": snow_a.pk})["name"][0]
    )
    assert HandoffRoute.objects.filter(tenant=tenant_b).count() == 0


def test_hours_field_errors(tenant_a: Tenant) -> None:
    errors = refused(
        hours_create,
        tenant=tenant_a,
        data={
            "name": "",
            "timezone": "Europe/Atlantis",
            "weekly": {"mon": [["22:00", "06:00"]]},
            "holidays": ["2026-13-01"],
        },
    )
    assert set(errors) == {"name", "timezone", "weekly", "holidays"}
    assert "crosses midnight" in errors["weekly"][0]
    hours_create(tenant=tenant_a, data=HOURS)
    assert "already exist" in refused(hours_create, tenant=tenant_a, data=HOURS)["name"][0]
    assert BusinessHours.objects.filter(tenant=tenant_a).count() == 1


def test_viewer_may_not_write(tenant_a: Tenant, bob: Any, snow_a: Connection) -> None:
    with pytest.raises(PermissionDenied):
        route_create(tenant=tenant_a, data={"name": "x", "connection_id": snow_a.pk}, actor=bob)
    with pytest.raises(PermissionDenied):
        hours_create(tenant=tenant_a, data=HOURS, actor=bob)
    assert not HandoffRoute.objects.exists() and not BusinessHours.objects.exists()
