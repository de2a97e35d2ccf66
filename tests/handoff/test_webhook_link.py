"""A verified vendor webhook naming a ticket refreshes the handoff on that ticket at once (through the
integrations signal chat connects to), de-duplicated as every webhook; a ticket's delivery does the same.
The same vendor ticket id in another tenant's connection is never touched."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.chat import tasks
from apps.chat.models import Handoff
from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage
from apps.integrations.services.webhooks import parse_hubspot, parse_salesforce, parse_servicenow
from apps.integrations.signals import outbox_settled
from apps.tenants.models import Tenant
from tests.chat.helpers import JSON, start
from tests.fixtures.chat import IssuedKey
from tests.fixtures.integrations import ORG_ID
from tests.handoff.support import hand_off, the_handoff, ticket_delivered
from tests.webhooks.helpers import outbound_message, post_servicenow

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The handoff refreshes queued (the tests run no worker)."""
    calls: list[dict[str, Any]] = []

    def enqueue(task: Any, *, kwargs: dict[str, Any]) -> bool:
        assert task is tasks.handoff_refresh_task
        calls.append(kwargs)
        return True

    monkeypatch.setattr(tasks, "task_enqueue", enqueue)
    return calls


def open_handoff(client: Client, key: IssuedKey, tenant: Tenant, vendor_id: str) -> Handoff:
    conversation_id, _ = hand_off(client, key)
    handoff = the_handoff(tenant, conversation_id)
    ticket_delivered(tenant, handoff, vendor_id)
    with tenant_context(tenant):
        Handoff.objects.filter(pk=handoff.pk).update(state="open", ticket_vendor_id=vendor_id)
    return handoff


def test_a_servicenow_webhook_naming_the_ticket_refreshes_its_handoff_once(
    api_client: Client,
    api_key_a: IssuedKey,
    api_key_b: IssuedKey,
    tenant_a: Tenant,
    tenant_b: Tenant,
    sn_a: tuple[Connection, str],
    sn_b: tuple[Connection, str],
    queued: list,
) -> None:
    mine = open_handoff(api_client, api_key_a, tenant_a, "0123456789abcdef0123456789abcdef")
    theirs = open_handoff(api_client, api_key_b, tenant_b, "0123456789abcdef0123456789abcdef")  # same id
    connection, secret = sn_a
    event = {"id": "evt-1", "table": "incident", "sys_id": "0123456789abcdef0123456789abcdef"}
    assert post_servicenow(Client(), connection, secret, event).status_code == 204
    assert queued == [{"tenant_id": tenant_a.id, "handoff_id": mine.pk}]
    # The vendor redelivers the same event: de-duplicated, no second refresh.
    assert post_servicenow(Client(), connection, secret, event).status_code == 204
    assert len(queued) == 1
    assert theirs.pk not in [c["handoff_id"] for c in queued if c["tenant_id"] == tenant_b.id]


def test_a_webhook_for_another_table_or_an_unknown_ticket_refreshes_nothing(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, sn_a: tuple[Connection, str], queued: list
) -> None:
    open_handoff(api_client, api_key_a, tenant_a, "sysA")
    connection, secret = sn_a
    post_servicenow(Client(), connection, secret, {"id": "e1", "table": "sys_user", "sys_id": "sysA"})
    post_servicenow(Client(), connection, secret, {"id": "e2", "table": "incident", "sys_id": "other"})
    post_servicenow(Client(), connection, secret, {"id": "e3", "table": "incident"})
    assert queued == []


def test_a_forged_webhook_refreshes_nothing(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, sn_a: tuple[Connection, str], queued: list
) -> None:
    open_handoff(api_client, api_key_a, tenant_a, "sysA")
    connection, _secret = sn_a
    event = {"id": "e1", "table": "incident", "sys_id": "sysA"}
    assert post_servicenow(Client(), connection, "wrong-secret", event).status_code in (401, 403)
    assert queued == []


def test_a_finished_handoff_is_not_refreshed(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, sn_a: tuple[Connection, str], queued: list
) -> None:
    handoff = open_handoff(api_client, api_key_a, tenant_a, "sysA")
    with tenant_context(tenant_a):
        Handoff.objects.filter(pk=handoff.pk).update(state="resolved")
    post_servicenow(Client(), sn_a[0], sn_a[1], {"id": "e1", "table": "incident", "sys_id": "sysA"})
    assert queued == []


def test_the_tickets_delivery_refreshes_the_requested_handoff_at_once(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, sn_a: tuple[Connection, str], queued: list
) -> None:
    conversation_id, _ = hand_off(api_client, api_key_a)
    handoff = the_handoff(tenant_a, conversation_id)
    with tenant_context(tenant_a):
        ticket = OutboxMessage.objects.get(pk=handoff.ticket_outbox_id or 0)
        outbox_settled.send(sender=OutboxMessage, message=ticket, status="delivered")
        other = start(api_client, api_key_a)  # a conversation's lead is not a handoff ticket
        lead = OutboxMessage(stream="leads", ordering_key=f"conversation:{other['id']}:lead", pk=10**9)
        outbox_settled.send(sender=OutboxMessage, message=lead, status="delivered")
    assert queued == [{"tenant_id": tenant_a.id, "handoff_id": handoff.pk}]


# --- what each vendor's webhook says about the object -------------------------------------------------------
def test_events_carry_the_vendors_object_id() -> None:
    [sn] = parse_servicenow(b'{"id": "e1", "table": "incident", "sys_id": "abc"}')
    assert (sn.vendor_object, sn.object_id) == ("incident", "abc")
    [legacy] = parse_servicenow(b'{"id": "e1", "table": "incident"}')
    assert legacy.object_id == ""
    [odd] = parse_servicenow(b'{"id": "e1", "table": "incident", "sys_id": {"x": 1}}')
    assert odd.object_id == ""
    [hs] = parse_hubspot(
        b'[{"eventId": 1, "objectId": 4711, "subscriptionType": "ticket.propertyChange", "portalId": 1}]'
    )
    assert (hs.vendor_object, hs.object_id) == ("ticket", "4711")
    _org, [sf] = parse_salesforce(outbound_message(ORG_ID, [("04l1", "Case", "5005g00000AbCdE")]))
    assert (sf.vendor_object, sf.object_id) == ("Case", "5005g00000AbCdE")


def test_csat_and_handoff_endpoints_are_404_for_another_tenants_conversation(
    api_client: Client, api_key_a: IssuedKey, api_key_b: IssuedKey
) -> None:
    conversation = start(api_client, api_key_a)
    for path in ("csat", "handoff", "messages"):
        response = api_client.post(
            f"/api/v1/conversations/{conversation['id']}/{path}",
            {"rating": 5} if path == "csat" else {"text": "x"} if path == "messages" else {},
            content_type=JSON,
            **api_key_b.headers,
        )
        assert response.status_code == 404, path


def test_a_connection_whose_webhooks_arrive_is_polled_at_the_long_interval_only(
    api_client: Client,
    api_key_a: IssuedKey,
    tenant_a: Tenant,
    tenant_b: Tenant,
    sn_a: tuple[Connection, str],
    sn_b: tuple[Connection, str],
    queued: list,
    settings: Any,
) -> None:
    """Polls are the safety net: once a verified webhook arrived, the connection's handoffs are read every
    HUB_HANDOFF_WEBHOOK_POLL_SECONDS; a forged one proves nothing; another tenant's connection keeps 15 s."""
    from apps.chat.services.handoff_thread import poll_interval_for

    settings.HUB_HANDOFF_POLL_SECONDS, settings.HUB_HANDOFF_WEBHOOK_POLL_SECONDS = 15, 300
    connection, secret = sn_a
    other, _ = sn_b
    with tenant_context(tenant_a):
        assert poll_interval_for(connection_id=connection.pk).total_seconds() == 15
    assert (
        post_servicenow(Client(), connection, "not-the-secret", {"id": "e0", "table": "incident"}).status_code
        == 401
    )
    with tenant_context(tenant_a):
        assert poll_interval_for(connection_id=connection.pk).total_seconds() == 15
    open_handoff(api_client, api_key_a, tenant_a, "fedcba9876543210fedcba9876543210")
    event = {"id": "evt-poll", "table": "incident", "sys_id": "fedcba9876543210fedcba9876543210"}
    assert post_servicenow(Client(), connection, secret, event).status_code == 204
    with tenant_context(tenant_a):
        assert poll_interval_for(connection_id=connection.pk).total_seconds() == 300
    with tenant_context(tenant_b):
        assert poll_interval_for(connection_id=other.pk).total_seconds() == 15
