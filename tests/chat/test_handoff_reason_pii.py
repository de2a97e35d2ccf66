"""The handoff `reason` is the user's own words: it is redacted like message text before it is stored or sent.

End to end on real services: the chat API asks for a human with an e-mail address and a phone number in the
reason; neither may reach the outbox row (the region database), any log line, or the ticket the Salesforce
simulator (a real HTTPS server on loopback) receives when the relay delivers it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus
from apps.integrations.services.outbox import outbox_relay
from apps.policies.services import policy_update
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
PHONE_DIGITS = "1701234567"
REASON = "Please call me at +49 170 1234567 or write to jane.doe@example.com, my order is wrong"


def _leaks(text: str) -> list[str]:
    digits = "".join(ch for ch in text if ch.isdigit())
    return [found for found, hit in ((EMAIL, EMAIL in text), ("phone", PHONE_DIGITS in digits)) if hit]


def _vendor_cases(sim: SalesforceSimulator) -> list[dict[str, Any]]:
    table = sim.tables["tickets"]
    with table.lock:
        rows = [dict(row.data) for row in table.rows.values() if not row.deleted]
    return [row for row in rows if str(row.get("Ext_Id__c") or "").startswith("hub-")]


def _handoff(api_key: IssuedKey, reason: str) -> dict[str, Any]:
    client = Client()
    started = client.post("/api/v1/conversations", {}, content_type="application/json", **api_key.headers)
    assert started.status_code == 201, started.content
    conversation_id = started.json()["id"]
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/handoff",
        {"reason": reason},
        content_type="application/json",
        **api_key.headers,
    )
    assert response.status_code == 200, response.content
    assert response.json()["reply"]["handoff"] is True
    return dict(response.json())


def test_handoff_reason_with_email_and_phone_is_neither_stored_nor_sent(
    api_key_a: IssuedKey,
    tenant_a: Tenant,
    sf_conn: Connection,
    sf: SalesforceSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _handoff(api_key_a, REASON)

    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get(stream="tickets")
        description = message.payload["description"]
        assert "Reason: Please call me at [PHONE] or write to [EMAIL], my order is wrong" in description
        with connections["region_eu"].cursor() as cursor:  # every stored row, as the database holds it
            cursor.execute("SELECT payload::text FROM integrations_outboxmessage")
            stored = " ".join(row[0] for row in cursor.fetchall())
            cursor.execute("SELECT coalesce(string_agg(text, ' '), '') FROM chat_message")
            stored += cursor.fetchone()[0]
        assert _leaks(stored) == []

        assert outbox_relay(connection_id=sf_conn.pk) == 1
        assert OutboxMessage.objects.get(pk=message.pk).status == OutboxStatus.DELIVERED
    cases = _vendor_cases(sf)
    assert len(cases) == 1
    assert "[EMAIL]" in cases[0]["Description"] and "[PHONE]" in cases[0]["Description"]
    assert _leaks(repr(cases)) == []
    assert _leaks("\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)) == []


def test_handoff_reason_follows_the_tenant_policy_like_message_text(
    api_key_a: IssuedKey, tenant_a: Tenant, sf_conn: Connection, alice: Any
) -> None:
    """A tenant that keeps transcripts unredacted (its choice, audited) keeps the reason as given too."""
    policy_update(tenant=tenant_a, values={"redact_transcripts": False}, actor=alice)
    _handoff(api_key_a, REASON)
    with tenant_context(tenant_a):
        assert f"Reason: {REASON}" in OutboxMessage.objects.get(stream="tickets").payload["description"]
