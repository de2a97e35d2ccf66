"""The worker's edges: long replies split for the platform, citations as links, transient failures retried
then failed, erasure takes the platform messages along, secrets never in logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client

from apps.chat.models import Conversation, InboundEvent, InboundStatus
from apps.chat.retention import erase_transcripts
from apps.chat.services import channel_inbound
from apps.chat.services.channel_inbound import Retry, channel_inbound_process
from apps.chat.services.platform import reply_parts, split_text
from apps.core.context import tenant_context
from apps.integrations.models import OutboxMessage
from apps.policies.registry import Subject
from tests.channels.platforms import USER_PHONE, message, post, wire

pytestmark = pytest.mark.django_db


def test_split_text_cuts_at_sentences_then_words_within_the_limit() -> None:
    text = "Erster Satz ist hier. " * 30 + "ein-sehr-langes-wort " * 40
    parts = split_text(text, 160)
    assert all(len(p) <= 160 for p in parts)
    assert parts[0].endswith(".")
    assert " ".join(parts).split() == text.split()
    assert split_text("kurz", 160) == ["kurz"]
    assert all(len(p) <= 10 for p in split_text("x" * 35, 10))


def test_reply_parts_append_citations_as_source_links() -> None:
    reply = {
        "text": "Wir haben von 9 bis 18 Uhr geöffnet.",
        "citations": [
            {"title": "Öffnungszeiten", "url": "https://help.example/hours"},
            {"title": "no link", "url": ""},
        ],
    }
    [part] = reply_parts(reply, 1600)
    assert part.splitlines() == [
        "Wir haben von 9 bis 18 Uhr geöffnet.",
        "",
        "Sources:",
        "- Öffnungszeiten: https://help.example/hours",
    ]


def test_a_reply_longer_than_the_platform_allows_is_sent_in_parts(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    w = wire(tenant_a, "sms", sims["sms"])
    long_answer = "Das ist ein Satz mit einigen Wörtern. " * 80  # ~3,000 characters, SMS max is 1,600
    real = channel_inbound.message_post

    def long_turn(**kwargs: Any) -> Any:
        turn = real(**kwargs)
        turn.reply = {**turn.reply, "text": long_answer, "citations": []}
        return turn

    monkeypatch.setattr(channel_inbound, "message_post", long_turn)
    post(Client(), w, message(w, "Hallo"))
    with tenant_context(tenant_a):
        [event] = InboundEvent.objects.filter(channel_id=w.channel.id)
        assert channel_inbound_process(event_id=event.pk) == InboundStatus.DONE
        texts = [
            m.payload["text"]
            for m in OutboxMessage.objects.filter(connection=w.connection).order_by("sequence")
        ]
    assert len(texts) == 2 and all(len(t) <= 1600 for t in texts)
    assert " ".join(texts).split() == long_answer.split()


def test_a_transient_failure_is_retried_then_the_event_fails(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    post(Client(), w, message(w, "Hallo"))

    def broken(**kwargs: Any) -> Any:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(channel_inbound, "message_post", broken)
    with tenant_context(tenant_a):
        [event] = InboundEvent.objects.filter(channel_id=w.channel.id)
        for _ in range(channel_inbound.MAX_ATTEMPTS - 1):
            with pytest.raises(Retry) as retry:
                channel_inbound_process(event_id=event.pk)
            assert 0 <= retry.value.countdown <= channel_inbound.RETRY_CAP_SECONDS
        assert channel_inbound_process(event_id=event.pk) == InboundStatus.FAILED
        event.refresh_from_db()
    assert event.status == InboundStatus.FAILED and "database went away" in event.last_error
    assert event.attempts == channel_inbound.MAX_ATTEMPTS
    d = sims["whatsapp"].describe()
    for secret in (d["app_secret"], d["access_token"], d["verify_token"]):
        assert secret not in caplog.text and secret not in event.last_error


def test_erasing_a_person_takes_their_platform_messages(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    post(Client(), w, message(w, "Hallo"))
    with tenant_context(tenant_a):
        [event] = InboundEvent.objects.filter(channel_id=w.channel.id)
        channel_inbound_process(event_id=event.pk)
        assert Conversation.objects.filter(channel_id=w.channel.id).exists()
    erased = erase_transcripts(tenant=tenant_a, subject=Subject(phone=USER_PHONE))
    assert erased == 1
    with tenant_context(tenant_a):
        assert not InboundEvent.objects.filter(channel_id=w.channel.id).exists()
        assert not Conversation.objects.filter(channel_id=w.channel.id).exists()
