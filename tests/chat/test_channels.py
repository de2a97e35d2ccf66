"""Channels: the services' validation and role checks, and the management API (the generic resource checks
from tests/fixtures/api.py, and the channels' own)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.chat.models import Action, Channel
from apps.chat.services.channels import channel_create, channel_set_enabled, channel_update
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.knowledge.services import kb_create
from apps.tenants.models import Tenant
from tests.fixtures.api import CreateTests, ListTests, RetrieveTests, UpdateTests
from tests.fixtures.integrations import offline_connection

pytestmark = pytest.mark.django_db


def _errors(fn: Any, **kwargs: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as info:
        fn(**kwargs)
    return info.value.errors


# --- services ------------------------------------------------------------------------------------------
def test_create_normalizes_and_audits(tenant_a: Tenant, alice: Any) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Help", source_locale="en")
    ticket = offline_connection(tenant_a, "servicenow", name="Service desk")
    channel = channel_create(
        tenant=tenant_a,
        name="  Website  ",
        kind="web",
        allowed_actions=["handoff", "order_status", "handoff"],
        knowledge_base_id=str(kb.pk),
        content_region="us",
        ticket_connection_id=ticket.pk,
        actor=alice,
    )
    channel.refresh_from_db()
    assert channel.name == "Website"
    assert channel.default_locale == "en"  # the tenant's
    assert channel.allowed_actions == ["order_status", "handoff"]  # documented order, no repeats
    assert channel.knowledge_base_id == kb.pk
    assert channel.content_region == "us"
    assert channel.ticket_connection_id == ticket.pk
    with tenant_context(tenant_a):
        event = AuditEvent.objects.filter(action="channel.created").get()
    assert event.target_id == str(channel.pk)
    assert event.changes["allowed_actions"] == ["order_status", "handoff"]
    assert event.actor_label == "alice"


def test_create_refuses_bad_fields_with_field_messages(tenant_a: Tenant, tenant_b: Tenant) -> None:
    with tenant_context(tenant_b):
        foreign_kb = kb_create(tenant=tenant_b, name="B help", source_locale="en")
    errors = _errors(
        channel_create,
        tenant=tenant_a,
        name=" ",
        kind="fax",
        default_locale="xx_YY!",
        allowed_actions=["order_status", "launch_rockets"],
        knowledge_base_id=foreign_kb.pk,
        content_region="mars",
        ticket_connection_id=uuid.uuid4(),
    )
    assert set(errors) == {
        "name",
        "kind",
        "default_locale",
        "allowed_actions",
        "knowledge_base_id",
        "content_region",
        "ticket_connection_id",
    }
    assert "launch_rockets" in errors["allowed_actions"][0]
    assert "mars" in errors["content_region"][0]
    assert Channel.objects.count() == 0


def test_locale_must_be_one_of_the_tenants(tenant_a: Tenant) -> None:
    errors = _errors(channel_create, tenant=tenant_a, name="W", default_locale="ja")
    assert errors["default_locale"] == ["Use one of the tenant's locales: en, de."]
    assert channel_create(tenant=tenant_a, name="W", default_locale="de").default_locale == "de"


def test_connections_must_support_the_stream(tenant_a: Tenant) -> None:
    sap = offline_connection(tenant_a, "sap", name="ERP")  # SAP cannot create tickets nor leads
    servicenow = offline_connection(tenant_a, "servicenow", name="Desk")  # tickets yes, leads no
    errors = _errors(
        channel_create,
        tenant=tenant_a,
        name="W",
        ticket_connection_id=sap.pk,
        lead_connection_id=servicenow.pk,
    )
    assert errors["ticket_connection_id"] == ["The connection “ERP” cannot create tickets."]
    assert errors["lead_connection_id"] == ["The connection “Desk” cannot create leads."]


def test_duplicate_name_is_a_field_error(tenant_a: Tenant, channel_a: Channel) -> None:
    errors = _errors(channel_create, tenant=tenant_a, name="Website")
    assert errors == {"name": ["A channel with this name already exists."]}


def test_viewer_may_not_manage_channels(tenant_a: Tenant, bob: Any, channel_a: Channel) -> None:
    with pytest.raises(PermissionDenied):
        channel_create(tenant=tenant_a, name="Nope", actor=bob)
    with pytest.raises(PermissionDenied):
        channel_update(channel=channel_a, changes={"name": "Nope"}, actor=bob)
    with pytest.raises(PermissionDenied):
        channel_set_enabled(channel=channel_a, enabled=False, actor=bob)
    channel_a.refresh_from_db()
    assert (channel_a.name, channel_a.enabled) == ("Website", True)


def test_admin_of_another_tenant_may_not_manage(channel_a: Channel, charlie: Any) -> None:
    with pytest.raises(PermissionDenied):
        channel_update(channel=channel_a, changes={"name": "Mine"}, actor=charlie)


def test_update_changes_only_what_differs_and_audits_before_after(
    tenant_a: Tenant, alice: Any, channel_a: Channel
) -> None:
    channel_update(
        channel=channel_a, changes={"allowed_actions": ["handoff"], "name": "Website"}, actor=alice
    )
    channel_a.refresh_from_db()
    assert channel_a.allowed_actions == ["handoff"]
    with tenant_context(tenant_a):
        event = AuditEvent.objects.filter(action="channel.updated").get()
    assert event.changes == {
        "before": {"allowed_actions": Action.values},
        "after": {"allowed_actions": ["handoff"]},
    }
    channel_update(channel=channel_a, changes={"name": "Website"}, actor=alice)  # nothing changes
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="channel.updated").count() == 1


def test_clearing_optional_references(tenant_a: Tenant, channel_a: Channel) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Help", source_locale="en")
    channel_update(channel=channel_a, changes={"knowledge_base_id": kb.pk})
    channel_update(channel=channel_a, changes={"knowledge_base_id": None, "content_region": ""})
    channel_a.refresh_from_db()
    assert channel_a.knowledge_base_id is None


def test_disable_and_enable_are_audited(tenant_a: Tenant, alice: Any, channel_a: Channel) -> None:
    channel_set_enabled(channel=channel_a, enabled=False, actor=alice)
    channel_set_enabled(channel=channel_a, enabled=False, actor=alice)  # idempotent
    channel_set_enabled(channel=channel_a, enabled=True, actor=alice)
    with tenant_context(tenant_a):
        events = AuditEvent.objects.filter(action__startswith="channel.").order_by("seq")
        actions = list(events.values_list("action", flat=True))
    assert actions == ["channel.created", "channel.disabled", "channel.enabled"]


# --- management API ------------------------------------------------------------------------------------
BASE = "/api/v1/tenants/tenant-a/channels/"


class TestChannelsAPI(ListTests, RetrieveTests, CreateTests, UpdateTests):
    list_view = "channels-api:channel-list"
    detail_view = "channels-api:channel-detail"
    viewer_reads = False
    instance_data = {"name": "Website", "kind": "web", "enabled": True}
    create_data = {"name": "WhatsApp", "kind": "whatsapp", "allowed_actions": ["handoff"]}
    created = {**create_data, "active_keys": 0, "enabled": True}
    update_data = {"enabled": False, "default_locale": "de"}

    @pytest.fixture
    def instance(self, channel_a: Channel) -> Channel:
        return channel_a

    def test_api_list_filters_by_kind(self, alice_api: APIClient) -> None:
        whatsapp = alice_api.post(BASE, {"name": "WhatsApp", "kind": "whatsapp"}, format="json").json()
        listed = alice_api.get(BASE, {"kind": "whatsapp"}).json()
        assert listed["count"] == 1
        assert listed["results"][0]["id"] == whatsapp["id"]
        assert alice_api.get(BASE, {"kind": "web"}).json()["count"] == 0

    def test_api_charlie_lists_only_his_own_channels(
        self, charlie_api: APIClient, channel_a: Channel, channel_b: Channel
    ) -> None:
        assert [c["id"] for c in charlie_api.get("/api/v1/tenants/tenant-b/channels/").json()["results"]] == [
            str(channel_b.pk)
        ]

    def test_api_bad_input_is_400_with_field_messages(self, alice_api: APIClient, channel_a: Channel) -> None:
        response = alice_api.post(
            BASE, {"name": "X", "kind": "fax", "allowed_actions": ["nope"], "colour": "red"}, format="json"
        )
        assert response.status_code == 400
        assert response.json()["colour"] == ["Unknown field."]
        response = alice_api.post(BASE, {"name": "X", "allowed_actions": ["nope"]}, format="json")
        assert response.status_code == 400
        assert "allowed_actions" in response.json()
        response = alice_api.post(BASE, {"name": "Website"}, format="json")  # service-level refusal
        assert response.status_code == 400
        assert response.json() == {"name": ["A channel with this name already exists."]}
        response = alice_api.patch(f"{BASE}{channel_a.pk}/", {"content_region": "mars"}, format="json")
        assert response.status_code == 400
        assert "content_region" in response.json()
        response = alice_api.patch(f"{BASE}{channel_a.pk}/", {"id": str(uuid.uuid4())}, format="json")
        assert response.json() == {"id": ["This field cannot be changed."]}

    def test_api_malformed_ids_are_404(self, alice_api: APIClient) -> None:
        assert alice_api.get(f"{BASE}not-a-uuid/").status_code == 404
        assert alice_api.get(f"{BASE}{uuid.uuid4()}/").status_code == 404
        assert alice_api.get("/api/v1/tenants/tenant-a/api-keys/999999/").status_code == 404

    def test_lists_use_a_fixed_number_of_queries(
        self, alice_api: APIClient, client: Any, alice: Any, tenant_a: Tenant, channel_a: Channel
    ) -> None:
        """No query per channel or per key: the list counts active keys in the same query."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from tests.fixtures.auth import login_verified
        from tests.fixtures.chat import issue_key

        login_verified(client, alice)
        console = f"/t/{tenant_a.slug}/channels/"

        def counts() -> tuple[int, int]:
            with CaptureQueriesContext(connection) as api:
                assert alice_api.get(BASE).status_code == 200
            with CaptureQueriesContext(connection) as page:
                assert client.get(console).status_code == 200
            return len(api.captured_queries), len(page.captured_queries)

        counts()  # warm-up: the token's first use records last_used_at once
        before = counts()
        for n in range(3):
            channel = channel_create(tenant=tenant_a, name=f"Bot {n}")
            issue_key(channel)
        issue_key(channel_a)
        assert counts() == before
        assert alice_api.get(BASE).json()["results"][0]["active_keys"] == 1
