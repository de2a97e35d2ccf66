"""The transcript purger and eraser (apps/chat/retention.py), driven through the chat API and the policy
services that run them: what goes, what stays, and the other tenant."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.chat.models import Conversation, Feedback, InboundEvent, Message
from apps.core.context import tenant_context
from apps.policies.models import Category
from apps.policies.services import erase_subject, policy_update, retention_enforce
from apps.tenants.models import Tenant
from tests.chat.helpers import JSON, say, start
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db


def conversation_with_turn(client: Client, key: IssuedKey, **body: Any) -> str:
    """A conversation with one turn (two messages) and a rating; its id."""
    conversation = start(client, key, **body)
    turn = say(client, key, conversation["id"], "Hello, where is my parcel?")
    assert turn.status_code == 200, turn.content
    rated = client.post(
        f"/api/v1/conversations/{conversation['id']}/feedback",
        {"rating": 2, "message_id": turn.json()["message_id"]},
        content_type=JSON,
        **key.headers,
    )
    assert rated.status_code == 201
    return str(conversation["id"])


def inbound(tenant: Tenant, conversation_id: str | None, *, age_days: int = 0) -> InboundEvent:
    with tenant_context(tenant):
        event = InboundEvent.objects.create(
            channel_id=uuid.uuid4(),
            channel_kind="whatsapp",
            platform_message_id=f"wamid.{uuid.uuid4().hex}",
            payload='{"from": "+49 170 1234567", "text": "hi"}',
            conversation_id=conversation_id,
        )
        if age_days:
            InboundEvent.objects.filter(pk=event.pk).update(
                updated_at=timezone.now() - timedelta(days=age_days)
            )
    return event


def age(tenant: Tenant, conversation_id: str, days: int) -> None:
    with tenant_context(tenant):
        Conversation.objects.filter(pk=conversation_id).update(
            updated_at=timezone.now() - timedelta(days=days)
        )


def counts(tenant: Tenant) -> tuple[int, int, int, int]:
    with tenant_context(tenant):
        return (
            Conversation.objects.count(),
            Message.objects.count(),
            Feedback.objects.count(),
            InboundEvent.objects.count(),
        )


# --- purge ------------------------------------------------------------------------------------------------
def test_purge_deletes_conversations_idle_past_the_policy_with_their_messages_and_feedback(
    api_client: Client, api_key_a: IssuedKey, api_key_b: IssuedKey, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    policy_update(tenant=tenant_a, values={"transcript_retention_days": 30})
    old = conversation_with_turn(api_client, api_key_a, user_ref="old@example.com")
    recent = conversation_with_turn(api_client, api_key_a, user_ref="recent@example.com")
    age(tenant_a, old, 31)
    inbound(tenant_a, old, age_days=31)
    kept_event = inbound(tenant_a, recent, age_days=29)
    other = conversation_with_turn(api_client, api_key_b, user_ref="old@example.com")
    age(tenant_b, other, 400)  # tenant B keeps transcripts 365 days (default), and is not this run
    assert counts(tenant_a) == (2, 4, 2, 2)

    report = retention_enforce(tenant=tenant_a)

    assert report.counts[Category.TRANSCRIPTS] == 1
    assert counts(tenant_a) == (1, 2, 1, 1)
    with tenant_context(tenant_a):
        assert list(Conversation.objects.values_list("pk", flat=True)) == [uuid.UUID(recent)]
        assert list(InboundEvent.objects.values_list("pk", flat=True)) == [kept_event.pk]
        assert not Message.objects.filter(conversation_id=old).exists()
    assert counts(tenant_b) == (1, 2, 1, 0)


def test_purge_counts_a_conversation_by_its_last_change_not_its_start(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    policy_update(tenant=tenant_a, values={"transcript_retention_days": 30})
    started_long_ago = conversation_with_turn(api_client, api_key_a, user_ref="a@example.com")
    with tenant_context(tenant_a):
        Conversation.objects.filter(pk=started_long_ago).update(
            created_at=timezone.now() - timedelta(days=300)
        )
    assert retention_enforce(tenant=tenant_a).counts[Category.TRANSCRIPTS] == 0
    # Thirty-one days later (time moved, nothing backdated) it goes.
    later = timezone.now() + timedelta(days=31)
    assert retention_enforce(tenant=tenant_a, now=later).counts[Category.TRANSCRIPTS] == 1
    assert counts(tenant_a)[0] == 0


def test_purge_works_in_batches_and_keep_forever_purges_nothing(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    ids = [conversation_with_turn(api_client, api_key_a, user_ref=f"u{n}@example.com") for n in range(5)]
    later = timezone.now() + timedelta(days=10_000)
    policy_update(tenant=tenant_a, values={"transcript_retention_days": None})
    assert Category.TRANSCRIPTS not in retention_enforce(tenant=tenant_a, now=later).counts
    assert counts(tenant_a)[0] == len(ids)
    policy_update(tenant=tenant_a, values={"transcript_retention_days": 1})
    report = retention_enforce(tenant=tenant_a, now=later, batch_size=2)
    assert report.counts[Category.TRANSCRIPTS] == 5
    assert counts(tenant_a) == (0, 0, 0, 0)


# --- erasure ----------------------------------------------------------------------------------------------
def test_erasure_deletes_the_subjects_conversations_by_email_and_their_platform_messages(
    api_client: Client,
    api_key_a: IssuedKey,
    api_key_b: IssuedKey,
    tenant_a: Tenant,
    tenant_b: Tenant,
    alice: Any,
) -> None:
    jane = conversation_with_turn(api_client, api_key_a, user_ref="Jane.Doe@Example.com")
    john = conversation_with_turn(api_client, api_key_a, user_ref="john@example.com")
    inbound(tenant_a, jane)
    john_event = inbound(tenant_a, john)
    other_tenant = conversation_with_turn(api_client, api_key_b, user_ref="jane.doe@example.com")

    report = erase_subject(tenant=tenant_a, email=" jane.doe@EXAMPLE.com ", actor=alice)

    assert report.counts["transcripts"] == 1
    with tenant_context(tenant_a):
        assert list(Conversation.objects.values_list("pk", flat=True)) == [uuid.UUID(john)]
        assert list(InboundEvent.objects.values_list("pk", flat=True)) == [john_event.pk]
        assert not Message.objects.filter(conversation_id=jane).exists()
        assert not Feedback.objects.filter(conversation_id=jane).exists()
    with tenant_context(tenant_b):
        assert Conversation.objects.filter(pk=other_tenant).exists()


def test_erasure_finds_conversations_by_phone_whatever_its_format(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, alice: Any
) -> None:
    conversation_with_turn(api_client, api_key_a, user_ref="+49 170 1234567")
    kept = conversation_with_turn(api_client, api_key_a, user_ref="+49 170 7654321")
    report = erase_subject(tenant=tenant_a, phone="49-170-123 4567", actor=alice)
    assert report.counts["transcripts"] == 1
    with tenant_context(tenant_a):
        assert list(Conversation.objects.values_list("pk", flat=True)) == [uuid.UUID(kept)]


def test_erasure_of_someone_without_conversations_deletes_nothing(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, alice: Any
) -> None:
    conversation_with_turn(api_client, api_key_a, user_ref="john@example.com")
    conversation_with_turn(api_client, api_key_a)  # anonymous: no user reference, never matched
    report = erase_subject(tenant=tenant_a, email="nobody@example.com", external_id="003X", actor=alice)
    assert report.counts["transcripts"] == 0
    assert counts(tenant_a)[0] == 2
