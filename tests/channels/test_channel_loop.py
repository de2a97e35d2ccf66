"""Platform message in → turn → reply out, for WhatsApp, Slack, Teams and SMS (Django test client + the
worker's service in-process + the outbox relay against each platform's simulator)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from apps.chat.models import Conversation, ConversationStatus, InboundEvent, InboundStatus, Message, Role
from apps.chat.services.channel_inbound import channel_inbound_process, channel_inbound_requeue_stale
from apps.chat.services.identity import conversation_identity
from apps.core.context import tenant_context
from apps.integrations.models import OutboxMessage, OutboxStatus
from apps.observability import metrics
from tests.channels.platforms import (
    SLACK_CHANNEL,
    USER_PHONE,
    Wired,
    message,
    post,
    process_all,
    relay,
    sent_texts,
    wire,
)

pytestmark = pytest.mark.django_db


def events(wired: Wired) -> Any:
    with tenant_context(wired.tenant):
        return list(InboundEvent.objects.filter(channel_id=wired.channel.id))


def counted(name: str, **labels: str) -> float:
    value = metrics.CHANNEL_MESSAGES.labels(**labels)._value.get() if name == "messages" else 0.0
    if name == "refused":
        value = metrics.CHANNEL_WEBHOOKS_REFUSED.labels(**labels)._value.get()
    return float(value)


def reply_observations(kind: str) -> float:
    """How many inbound→reply-enqueued latencies the histogram holds for `kind`."""
    return sum(
        sample.value
        for family in metrics.CHANNEL_REPLY_DURATION.collect()
        for sample in family.samples
        if sample.name.endswith("_count") and sample.labels.get("kind") == kind
    )


def forget_breakers() -> None:
    """The platform recovered: forget the breaker's open state (its probe time would be seconds away)."""
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    for key in client.scan_iter(match="*breaker*", count=1000):
        client.delete(key)


def follow_up(wired: Wired, first: Any, text: str) -> Any:
    """A next message in the same platform conversation (Slack: a reply in the first message's thread)."""
    if wired.kind == "slack":
        return message(wired, text, thread_ts=json.loads(first.body)["event"]["ts"])
    return message(wired, text)


def assert_recipient(wired: Wired) -> None:
    sent = wired.sim.sent()[-1]
    if wired.kind == "whatsapp":
        assert sent["to"].lstrip("+") == USER_PHONE.lstrip("+")
    elif wired.kind == "sms":
        assert sent["to"] == USER_PHONE
    elif wired.kind == "slack":
        assert sent["channel"] == SLACK_CHANNEL
    else:
        assert sent["conversation_id"] == "a:1simPersonalChat"


def test_a_platform_message_is_answered_on_the_platform(wired: Wired) -> None:
    before = counted("messages", kind=wired.kind, direction="in", outcome="accepted")
    response = post(Client(), wired, message(wired, "Hallo, wie sind eure Öffnungszeiten?"))
    assert response.status_code == 200, response.content
    [event] = events(wired)
    assert event.status == InboundStatus.QUEUED and event.channel_kind == wired.kind
    assert counted("messages", kind=wired.kind, direction="in", outcome="accepted") == before + 1

    replies_before = reply_observations(wired.kind)
    assert process_all(wired) == [InboundStatus.DONE]
    assert reply_observations(wired.kind) == replies_before + 1
    assert counted("messages", kind=wired.kind, direction="in", outcome="answered") >= 1
    assert relay(wired) >= 1
    with tenant_context(wired.tenant):
        conversation = Conversation.objects.get(channel_id=wired.channel.id)
        reply = Message.objects.get(conversation=conversation, role=Role.ASSISTANT)
        assert InboundEvent.objects.get(pk=event.pk).conversation_id == conversation.pk
        assert conversation.platform_key_hash and conversation.reply_ref
        identity = conversation_identity(conversation)
    assert sent_texts(wired) == [reply.text]
    assert_recipient(wired)
    assert conversation.identity_verified and identity is not None  # every platform vouches for its sender
    if wired.kind in ("whatsapp", "sms"):  # a phone number the order rule can match (E.164)
        assert identity.phone and identity.phone.startswith("+") and identity.user_id == identity.phone
    else:  # a workspace user, with the e-mail its directory vouches for (none from a multi-tenant Teams bot)
        assert identity.user_id.startswith(f"{wired.kind}:") and not identity.phone
        assert identity.email == ("alice@example.com" if wired.kind == "slack" else "")


def test_the_same_platform_message_twice_is_one_turn_and_one_reply(wired: Wired) -> None:
    signed = message(wired, "Hallo")
    client = Client()
    assert post(client, wired, signed).status_code == 200
    assert post(client, wired, signed).status_code == 200  # the platform's retry
    assert len(events(wired)) == 1
    process_all(wired)
    # A redelivered task finds the event done and does nothing.
    with tenant_context(wired.tenant):
        assert channel_inbound_process(event_id=events(wired)[0].pk) == "skipped"
    relay(wired)
    assert len(sent_texts(wired)) == 1
    with tenant_context(wired.tenant):
        assert Message.objects.filter(role=Role.USER).count() == 1


def test_a_second_message_continues_the_conversation(wired: Wired) -> None:
    client = Client()
    first = message(wired, "Hallo")
    post(client, wired, first)
    post(client, wired, follow_up(wired, first, "Noch eine Frage"))
    process_all(wired)
    with tenant_context(wired.tenant):
        assert Conversation.objects.filter(channel_id=wired.channel.id).count() == 1
        assert Conversation.objects.get(channel_id=wired.channel.id).turns == 2


def test_a_handed_off_conversation_gets_no_bot_reply(wired: Wired) -> None:
    client = Client()
    first = message(wired, "Hallo")
    post(client, wired, first)
    process_all(wired)
    with tenant_context(wired.tenant):
        Conversation.objects.filter(channel_id=wired.channel.id).update(status=ConversationStatus.HANDOFF)
        outbox_before = OutboxMessage.objects.count()
    post(client, wired, follow_up(wired, first, "Ist da jemand?"))
    assert process_all(wired) == [InboundStatus.DONE]
    with tenant_context(wired.tenant):
        assert OutboxMessage.objects.count() == outbox_before
        assert Message.objects.filter(role=Role.USER, text="Ist da jemand?").exists()


def test_a_platform_outage_while_replying_delivers_after_recovery_exactly_once(wired: Wired) -> None:
    post(Client(), wired, message(wired, "Hallo"))
    process_all(wired)
    wired.sim.inject(errors=[{"status": 503, "count": 100}])
    assert relay(wired) == 0
    assert sent_texts(wired) == []
    with tenant_context(wired.tenant):
        message_row = OutboxMessage.objects.get(connection=wired.connection)
        assert message_row.status == OutboxStatus.PENDING and message_row.attempts >= 1
        OutboxMessage.objects.filter(pk=message_row.pk).update(next_attempt_at=message_row.created_at)
    wired.sim.clear_faults()
    forget_breakers()
    assert relay(wired) == 1
    assert relay(wired) == 0
    assert len(sent_texts(wired)) == 1
    with tenant_context(wired.tenant):
        assert OutboxMessage.objects.get(connection=wired.connection).status == OutboxStatus.DELIVERED


def test_another_tenants_channel_id_with_tenant_a_signature_is_refused(
    tenant_a: Any, tenant_b: Any, sims: dict[str, Any]
) -> None:
    a = wire(tenant_a, "whatsapp", sims["whatsapp"])
    b = wire(tenant_b, "whatsapp", sims["whatsapp"], name="B's WhatsApp")
    # B's account is a different app: its secret differs from A's (the simulator's is A's).
    with tenant_context(tenant_b):
        b.connection.set_secrets({**b.connection.secrets, "app_secret": "tenant-b-app-secret"})
        b.connection.save(update_fields=["credentials"])
    signed = message(a, "Hallo")
    assert post(Client(), b, signed).status_code == 401
    assert events(b) == [] and events(a) == []


def test_unknown_disabled_and_unwired_channels_are_404(tenant_a: Any, sims: dict[str, Any]) -> None:
    import uuid

    a = wire(tenant_a, "slack", sims["slack"])
    signed = message(a, "Hallo")
    client = Client()
    assert post(client, a, signed, path=f"/hooks/channels/{uuid.uuid4()}/").status_code == 404
    a.channel.enabled = False
    a.channel.save(update_fields=["enabled"])
    assert post(client, a, signed).status_code == 404
    a.channel.enabled, a.channel.platform_connection_id = True, None
    a.channel.save(update_fields=["enabled", "platform_connection_id"])
    assert post(client, a, signed).status_code == 404
    assert events(a) == []


def test_the_sweep_requeues_a_lost_event(tenant_a: Any, sims: dict[str, Any], monkeypatch: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.chat.services import channel_inbound

    a = wire(tenant_a, "sms", sims["sms"])
    post(Client(), a, message(a, "Hallo"))
    published: list[dict[str, Any]] = []

    def enqueue(task: Any, kwargs: dict[str, Any]) -> bool:
        published.append(kwargs)
        return True

    monkeypatch.setattr(channel_inbound, "task_enqueue", enqueue)
    assert channel_inbound_requeue_stale() == 0  # fresh: its task may still be on its way
    later = timezone.now() + timedelta(seconds=channel_inbound.REQUEUE_AFTER_SECONDS + 1)
    assert channel_inbound_requeue_stale(now=later) == 1
    assert published == [{"tenant_id": tenant_a.id, "event_id": str(events(a)[0].pk)}]
    assert channel_inbound_requeue_stale(now=later) == 0  # claimed for this interval
