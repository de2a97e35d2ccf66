"""The rule: order data only for a verified user who is the order's customer; tickets and leads say
whether the requester was verified. A refused lookup carries no order data, not even whether the order exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.chat.models import Conversation
from apps.chat.services import actions
from apps.chat.services.identity import Identity, platform_identity
from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage, SyncedRecord
from apps.tenants.models import Tenant
from tests.fixtures.chat import IssuedKey
from tests.fixtures.metrics import scrape, value
from tests.identity.helpers import channel_identity, hmac_proof, id_token, order

pytestmark = pytest.mark.django_db(databases="__all__")

JSON = "application/json"
ORDER_FIELDS = ("Shipped", "00000123", "4711", "EUR")  # status, number as stored, amount, currency


def start(client: Client, key: IssuedKey, **body: Any) -> str:
    response = client.post("/api/v1/conversations", body, content_type=JSON, **key.headers)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def ask(client: Client, key: IssuedKey, conversation_id: str, text: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages", {"text": text}, content_type=JSON, **key.headers
    )
    assert response.status_code == 200, response.content
    return dict(response.json()["reply"])


@contextmanager
def no_order_reads(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Neither the lookup nor any query of synced records runs inside the block."""

    def forbidden(**kwargs: Any) -> Any:
        raise AssertionError("the order lookup ran for an unverified user")

    monkeypatch.setattr(actions, "order_lookup", forbidden)
    with CaptureQueriesContext(connections[f"region_{tenant.home_region.code}"]) as queries:
        yield
    assert not [q["sql"] for q in queries.captured_queries if SyncedRecord._meta.db_table in q["sql"]]
    monkeypatch.undo()


def set_identity(tenant: Tenant, conversation_id: str, identity: Identity) -> None:
    """What the platform ingest does for a WhatsApp/SMS/Slack/Teams sender."""
    with tenant_context(tenant):
        conversation = Conversation.objects.get(pk=conversation_id)
        conversation.identity_verified = True
        conversation.verified_identity = identity.as_json()
        conversation.save()


def assert_no_order_data(reply: dict[str, Any]) -> None:
    assert reply["intent"] == "order_status"
    assert reply["actions"] == []
    for text in ORDER_FIELDS:
        assert text not in reply["text"]


def test_an_unverified_user_gets_no_order_data_and_the_lookup_never_runs(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    order(tenant_a, offline_sf_conn, number="00000123", email="ann@example.com")
    conversation_id = start(api_client, api_key_a, user_ref="ann@example.com")  # a claim, not a proof
    before = scrape()
    with no_order_reads(tenant_a, monkeypatch):
        existing = ask(api_client, api_key_a, conversation_id, "Where is my order 123?")
        missing = ask(api_client, api_key_a, conversation_id, "Where is my order 999999?")
    after = scrape()
    assert_no_order_data(existing)
    assert "sign in" in existing["text"]
    assert existing["text"] == missing["text"]  # not even whether the order exists
    labels = {"tenant": "tenant-a", "channel": "web", "action": "order_status", "reason": "unverified"}
    sample = "hub_chat_identity_refusals_total"
    assert value(after, sample, **labels) - value(before, sample, **labels) == 2


def test_a_verified_user_gets_only_their_own_orders(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection
) -> None:
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    order(tenant_a, offline_sf_conn, number="00000123", email="Ann@Example.com")
    order(tenant_a, offline_sf_conn, number="00000456", email="bob@example.com", status="Delivered")
    order(tenant_a, offline_sf_conn, number="00000789", status="Packed")  # names no contact: nobody's to see
    token = id_token(channel, sub="ann", email="ann@example.com")
    conversation_id = start(api_client, api_key_a, identity_token=token)
    own = ask(api_client, api_key_a, conversation_id, "Where is my order 123?")
    assert "Shipped" in own["text"]
    done = {"type": "order_status", "status": "done", "order": "00000123", "state": "Shipped"}
    assert own["actions"] == [done]
    before = scrape()
    answers = {
        n: ask(api_client, api_key_a, conversation_id, f"Where is my order {n}?") for n in (456, 789, 999)
    }
    after = scrape()
    for number, reply in answers.items():
        assert_no_order_data(reply)
        assert "Delivered" not in reply["text"] and "Packed" not in reply["text"]
        # Another customer's order, one without contact data and a missing one read exactly alike.
        assert reply["text"] == answers[999]["text"].replace("999", str(number))
    labels = {"tenant": "tenant-a", "channel": "web", "action": "order_status", "reason": "mismatch"}
    sample = "hub_chat_identity_refusals_total"
    assert value(after, sample, **labels) - value(before, sample, **labels) == 3


def test_a_user_hash_alone_proves_an_id_but_no_email_so_orders_stay_closed(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    channel_identity(api_key_a.key.channel, mode="hmac")
    order(tenant_a, offline_sf_conn, number="00000123", email="ann@example.com")
    conversation_id = start(api_client, api_key_a, **hmac_proof("ann@example.com"))
    with no_order_reads(tenant_a, monkeypatch):
        reply = ask(api_client, api_key_a, conversation_id, "Where is my order 123?")
    assert_no_order_data(reply)
    assert "sign in" in reply["text"]


def test_a_whatsapp_verified_phone_matches_the_orders_phone(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection
) -> None:
    order(tenant_a, offline_sf_conn, number="00000123", phone="+49 151 1234 5678")
    order(tenant_a, offline_sf_conn, number="00000456", phone="+49 151 0000 0000", status="Delivered")
    # A national number: no match.
    order(tenant_a, offline_sf_conn, number="00000789", phone="0151 12345678", status="Packed")
    conversation_id = start(api_client, api_key_a)
    sender = platform_identity(channel_kind="whatsapp", sender="4915112345678")
    assert sender is not None
    set_identity(tenant_a, conversation_id, sender)
    assert "Shipped" in ask(api_client, api_key_a, conversation_id, "Where is my order 123?")["text"]
    assert_no_order_data(ask(api_client, api_key_a, conversation_id, "Where is my order 456?"))
    assert_no_order_data(ask(api_client, api_key_a, conversation_id, "Where is my order 789?"))


def test_an_orders_linked_contact_is_its_customer(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection
) -> None:
    from django.utils import timezone

    order(tenant_a, offline_sf_conn, number="00000123", contact_id="003C1")
    order(tenant_a, offline_sf_conn, number="00000456", contact_id="003C2", status="Delivered")
    with tenant_context(tenant_a):
        for external_id, email in (("003C1", "ann@example.com"), ("003C2", "bob@example.com")):
            SyncedRecord.objects.create(
                connection=offline_sf_conn, stream="contacts", external_id=external_id,
                updated_at=timezone.now(), email=email, fields={"email": email}, raw={}, content_hash="x",
                synced_at=timezone.now(),
            )  # fmt: skip
    conversation_id = start(api_client, api_key_a)
    set_identity(tenant_a, conversation_id, Identity(user_id="ann", email="ann@example.com"))
    assert "Shipped" in ask(api_client, api_key_a, conversation_id, "Where is my order 123?")["text"]
    assert_no_order_data(ask(api_client, api_key_a, conversation_id, "Where is my order 456?"))


def test_a_slack_user_is_verified_but_has_no_contact_data(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    order(tenant_a, offline_sf_conn, number="00000123", email="ann@example.com")
    conversation_id = start(api_client, api_key_a)
    slack = platform_identity(channel_kind="slack", sender="U024BE7LH")
    assert slack is not None
    set_identity(tenant_a, conversation_id, slack)
    with no_order_reads(tenant_a, monkeypatch):
        reply = ask(api_client, api_key_a, conversation_id, "Where is my order 123?")
    assert_no_order_data(reply)


def test_the_refusal_is_localized(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection
) -> None:
    order(tenant_a, offline_sf_conn, number="00000123", email="ann@example.com")
    texts = {}
    for locale in ("en", "de", "fr", "es", "ja"):
        conversation_id = start(api_client, api_key_a, locale=locale)
        texts[locale] = ask(api_client, api_key_a, conversation_id, "Where is my order 123?")["text"]
    assert len(set(texts.values())) == 5, texts
    for text in texts.values():
        assert "Shipped" not in text and "00000123" not in text


def test_leads_and_tickets_say_whether_the_requester_was_verified(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, offline_sf_conn: Connection
) -> None:
    """Rule: a lead or ticket is a new record at the user's own request, never a change to an existing
    contact, so an unverified user may create one; it is marked so the team checks before trusting it."""
    anonymous = start(api_client, api_key_a)
    ask(api_client, api_key_a, anonymous, "Please get a quote to ann@example.com")
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    token = id_token(channel, sub="ann", email="ann@example.com")
    verified = start(api_client, api_key_a, identity_token=token)
    ask(api_client, api_key_a, verified, "Please get a quote to Ann@Example.com")
    ask(api_client, api_key_a, verified, "Please get a quote to mallory@example.com")
    ask(api_client, api_key_a, anonymous, "Please open a ticket: the invoice PDF is empty")
    handoff = api_client.post(
        f"/api/v1/conversations/{verified}/handoff", {}, content_type=JSON, **api_key_a.headers
    )
    assert handoff.status_code == 200, handoff.content
    with tenant_context(tenant_a):
        leads = [m.payload for m in OutboxMessage.objects.filter(stream="leads").order_by("created_at")]
        tickets = [m.payload for m in OutboxMessage.objects.filter(stream="tickets").order_by("created_at")]
    assert len(leads) == 3
    assert leads[0]["description"].startswith("E-mail not verified")
    assert "Requester identity: not verified" in leads[0]["description"]
    assert leads[1]["description"].startswith("E-mail verified.")
    assert "verified (user id ann, e-mail ann@example.com)" in leads[1]["description"]
    # A verified user typing someone else's address: captured, but that address is not the verified one.
    assert leads[2]["email"] == "mallory@example.com"
    assert leads[2]["description"].startswith("E-mail not verified")
    assert tickets[0]["description"].startswith("Requester identity: not verified")
    assert tickets[1]["description"].startswith("Requester identity: verified (user id ann")
    assert "Handoff requested" in tickets[1]["description"]
