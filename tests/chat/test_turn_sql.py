"""The turn's hand-written statements (apps/core/sql.py): prepared, like the ORM, atomic with the outbox."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections
from django.test import Client

from apps.chat.auth import lookup
from apps.chat.models import Conversation, Message
from apps.chat.services import conversations as svc
from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage
from apps.tenants.models import Tenant
from apps.tenants.services import management_token_hash
from tests.chat.helpers import say, start
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db(databases="__all__")


def principal_of_key(key: IssuedKey) -> Any:
    entry = lookup(management_token_hash(key.plaintext))
    assert entry is not None
    return entry.principal


def test_partial_conversation_row_is_in_model_field_order() -> None:
    """Model.from_db maps a partial row by the model's field order: a reordered tuple would mix up fields."""
    order = [f.attname for f in Conversation._meta.concrete_fields]
    positions = [order.index(name) for name in svc._CONVERSATION_FIELDS]
    assert positions == sorted(positions)


def test_turn_start_loads_what_the_orm_loads(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    conversation_id = start(api_client, api_key_a, locale="de")["id"]
    assert say(api_client, api_key_a, conversation_id, "Hallo").status_code == 200
    loaded = svc.turn_start(
        principal=principal_of_key(api_key_a), conversation_id=conversation_id
    ).conversation
    with tenant_context(tenant_a):
        orm = Conversation.objects.get(pk=conversation_id)
    for name in svc._CONVERSATION_FIELDS:
        assert getattr(loaded, name) == getattr(orm, name), name
    assert (loaded.turns, loaded.locale, loaded.last_intent) == (1, "de", "small_talk")
    assert loaded.get_deferred_fields() == {
        "user_ref",
        "user_ref_hash",
        "metadata",
        "platform_key_hash",
        "reply_ref",
    }


def test_turn_start_loads_the_verified_identity_without_decrypting_it(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    """The identity gate of order status needs the verified flag and identity: they come with the turn's
    one statement, the identity as ciphertext, decrypted only when an action reads it."""
    from apps.chat.services.identity import Identity
    from apps.security.fields import Ciphertext

    conversation_id = start(api_client, api_key_a)["id"]
    with tenant_context(tenant_a):
        orm = Conversation.objects.get(pk=conversation_id)
        orm.identity_verified = True
        orm.verified_identity = Identity(user_id="u1", email="ann@example.com").as_json()
        orm.save()
    loaded = svc.turn_start(
        principal=principal_of_key(api_key_a), conversation_id=conversation_id
    ).conversation
    assert loaded.identity_verified is True
    assert isinstance(loaded.__dict__["verified_identity"], Ciphertext)
    assert "_verified_identity_plain" not in loaded.__dict__
    with tenant_context(tenant_a):
        assert Identity.from_json(loaded.verified_identity) == Identity(user_id="u1", email="ann@example.com")


def test_turn_statements_are_prepared_once_per_connection(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    conversation_id = start(api_client, api_key_a)["id"]
    for i in range(3):
        assert (
            say(api_client, api_key_a, conversation_id, "Hello", HTTP_IDEMPOTENCY_KEY=f"k{i}").status_code
            == 200
        )
    with connections[f"region_{tenant_a.home_region.code}"].cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = [row[0] for row in cursor.fetchall()]
    assert sum("WITH asked AS" in s for s in prepared) == 1
    assert sum("LEFT JOIN chat_message u" in s for s in prepared) == 1
    with tenant_context(tenant_a):
        assert Message.objects.filter(conversation_id=conversation_id).count() == 6


def test_a_lost_race_rolls_back_the_outbox_message_and_returns_the_first_turn(
    api_client: Client,
    api_key_a: IssuedKey,
    tenant_a: Tenant,
    offline_sf_conn: Connection,
) -> None:
    """Two requests with one Idempotency-Key: the second looked before the first committed, so it saw no
    earlier turn; its own write then fails on the unique index, and its ticket must not stay in the outbox."""
    conversation_id = start(api_client, api_key_a)["id"]
    principal = principal_of_key(api_key_a)
    stale = svc.turn_start(principal=principal, conversation_id=conversation_id, idempotency_key="same")
    first = say(api_client, api_key_a, conversation_id, "Please open a ticket, my printer is broken",
                HTTP_IDEMPOTENCY_KEY="same")  # fmt: skip
    assert first.status_code == 200
    with tenant_context(tenant_a):
        assert OutboxMessage.objects.filter(stream="tickets").count() == 1
        turn = svc.message_post(
            principal=principal,
            conversation=stale.conversation,
            text="Please open a ticket, my printer is broken",
            idempotency_key="same",
            start=stale,
        )
        assert turn.replayed and turn.message_id == first.json()["message_id"]
        assert turn.reply == first.json()["reply"]
        assert OutboxMessage.objects.filter(stream="tickets").count() == 1
        assert Message.objects.filter(conversation_id=conversation_id).count() == 2
        assert Conversation.objects.get(pk=conversation_id).turns == 1


def test_another_channels_conversation_is_not_found(
    api_client: Client, api_key_a: IssuedKey, api_key_b: IssuedKey
) -> None:
    conversation_id = start(api_client, api_key_a)["id"]
    with pytest.raises(svc.ConversationNotFound):
        svc.turn_start(principal=principal_of_key(api_key_b), conversation_id=conversation_id)
    with pytest.raises(svc.ConversationNotFound):
        svc.turn_start(principal=principal_of_key(api_key_a), conversation_id="not-a-uuid")


def test_turn_data_renders_what_the_documented_serializer_renders() -> None:
    from apps.chat.api.conversation_serializers import TurnSerializer, turn_data

    turn = svc.Turn(
        conversation_id="6631b8e0-357b-4e35-b3b5-c07661fcb2ba",
        message_id=7,
        reply={
            "text": "Rücksendungen: 30 Tage.",
            "citations": [{"article_key": "returns", "title": "Rückgabe", "locale": "de", "url": "/kb/x"}],
            "intent": "knowledge",
            "actions": [{"type": "create_ticket", "status": "queued", "reference": "T-1", "degraded": True}],
            "handoff": False,
        },
    )
    assert turn_data(turn) == TurnSerializer(turn).data
    turn.reply = {**turn.reply, "citations": [], "actions": [], "handoff": True}
    assert turn_data(turn) == TurnSerializer(turn).data
