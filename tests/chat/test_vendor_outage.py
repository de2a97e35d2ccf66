"""A vendor outage never takes the chat down: the turn answers at once, the outbox delivers after recovery."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus
from apps.integrations.services.outbox import outbox_deliver
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.chat import IssuedKey
from tests.fixtures.outbox import make_due

pytestmark = pytest.mark.django_db

JSON = "application/json"


def test_ticket_during_an_outage_is_answered_now_and_delivered_after_recovery(
    api_client: Client,
    api_key_a: IssuedKey,
    tenant_a: Tenant,
    sf: SalesforceSimulator,
    sf_conn: Connection,
    settings: Any,
) -> None:
    settings.HUB_BREAKER_FAILURE_THRESHOLD = 100  # this test is about the outbox, not the breaker
    headers: dict[str, Any] = dict(api_key_a.headers)
    sf.inject(outage="503")
    conversation = api_client.post("/api/v1/conversations", {}, content_type=JSON, **headers).json()
    response = api_client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        {"text": "Please open a ticket: my invoice PDF is empty"},
        content_type=JSON,
        **headers,
    )
    assert response.status_code == 200
    action = response.json()["reply"]["actions"][0]
    assert (action["type"], action["status"], action["connector"]) == (
        "create_ticket",
        "queued",
        "salesforce",
    )
    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get()
        assert outbox_deliver(message_id=message.pk) == OutboxStatus.PENDING  # the vendor is down: kept
        message.refresh_from_db()
        assert message.attempts == 1 and message.last_error
    sf.clear_faults()
    make_due(tenant_a)
    with tenant_context(tenant_a):
        assert outbox_deliver(message_id=message.pk) == OutboxStatus.DELIVERED
        message.refresh_from_db()
    cases = [
        row.data
        for row in sf.tables["tickets"].rows.values()
        if row.data.get("Ext_Id__c") == action["reference"]
    ]
    assert len(cases) == 1
    assert "invoice PDF is empty" in cases[0]["Subject"]
    assert message.vendor_id
