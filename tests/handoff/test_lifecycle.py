"""The handoff lifecycle in process: open → ticket learned → agents' public comments reach the conversation
once → the bot resumes (ticket resolved or the agent's phrase) and asks for a rating. The vendor's thread is
scripted (tests/handoff/support.FakeTicket); the simulators' end-to-end runs are in test_roundtrip_e2e.py."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from apps.chat.models import (
    BusinessHours,
    Conversation,
    ConversationStatus,
    Feedback,
    FeedbackKind,
    Handoff,
    HandoffRoute,
    HandoffState,
    Message,
    Role,
)
from apps.chat.services import routing
from apps.chat.services.handoff import rating_of
from apps.chat.services.handoff_thread import handoff_refresh, handoffs_due, resume_phrase_strip
from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus
from apps.integrations.resilience import breaker_for
from apps.tenants.models import Tenant
from connectors.errors import ConnectorError, VendorUnavailable
from connectors.tickets import TicketState
from tests.chat.helpers import JSON, say
from tests.fixtures.chat import IssuedKey
from tests.handoff.support import (
    FakeTicket,
    agent_texts,
    hand_off,
    messages,
    the_handoff,
    ticket_delivered,
)

pytestmark = pytest.mark.django_db


def refresh(tenant: Tenant, handoff: Handoff) -> Any:
    with tenant_context(tenant):
        return handoff_refresh(handoff_id=handoff.pk)


@pytest.fixture
def opened(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, sn_a: tuple[Connection, str], tickets: dict
) -> tuple[str, Handoff, FakeTicket]:
    """A German conversation handed off, its ticket delivered as sys1 and learned (state open)."""
    conversation_id, _turn = hand_off(api_client, api_key_a)
    handoff = the_handoff(tenant_a, conversation_id)
    ticket = tickets[sn_a[0].pk, "sys1"] = FakeTicket("sys1")
    ticket_delivered(tenant_a, handoff, "sys1")
    assert refresh(tenant_a, handoff).state == HandoffState.OPEN
    return conversation_id, the_handoff(tenant_a, conversation_id), ticket


# --- open ---------------------------------------------------------------------------------------------------
def test_a_handoff_records_its_ticket_and_route_with_the_queue_in_the_payload(
    api_client: Client,
    api_key_a: IssuedKey,
    tenant_a: Tenant,
    sn_a: tuple[Connection, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = sn_a[0]
    monkeypatch.setattr(
        routing,
        "handoff_route",
        lambda **kw: routing.RouteDecision(connection=connection, queue="Service Desk L2"),
    )
    conversation_id, turn = hand_off(api_client, api_key_a)
    assert turn["reply"]["handoff"] is True
    handoff = the_handoff(tenant_a, conversation_id)
    with tenant_context(tenant_a):
        ticket = OutboxMessage.objects.get(pk=handoff.ticket_outbox_id or 0)
        assert Conversation.objects.get(pk=conversation_id).status == ConversationStatus.HANDOFF
    assert handoff.state == HandoffState.REQUESTED
    assert handoff.connection_id == connection.pk and handoff.queue == "Service Desk L2"
    assert ticket.stream == "tickets" and ticket.payload["queue"] == "Service Desk L2"
    assert handoff.ticket_external_id == ticket.external_id
    assert handoff.next_poll_at is not None and handoff.next_poll_at <= timezone.now()
    assert turn["reply"]["actions"][0]["reference"] == ticket.external_id


def test_no_ticket_connection_means_no_handoff_and_the_bot_keeps_the_conversation(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    conversation_id, turn = hand_off(api_client, api_key_a)
    assert turn["reply"]["handoff"] is False
    with tenant_context(tenant_a):
        assert not Handoff.objects.exists()
        assert Conversation.objects.get(pk=conversation_id).status == ConversationStatus.OPEN
    reply = say(api_client, api_key_a, conversation_id, "Hallo").json()["reply"]
    assert reply["text"]  # the bot still answers


def test_outside_hours_the_bot_says_when_a_person_answers_in_the_customers_language_and_zone(
    api_client: Client,
    api_key_a: IssuedKey,
    tenant_a: Tenant,
    sn_a: tuple[Connection, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tenant_context(tenant_a):
        hours = BusinessHours.objects.create(tenant_id=tenant_a.id, name="Tokyo", timezone="Asia/Tokyo")
        route = HandoffRoute.objects.create(
            tenant_id=tenant_a.id, name="JP", connection_id=sn_a[0].pk, business_hours=hours
        )
    next_open = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    monkeypatch.setattr(
        routing,
        "handoff_route",
        lambda **kw: routing.RouteDecision(
            connection=sn_a[0], route_id=route.pk, outside_hours=True, next_open=next_open
        ),
    )
    conversation_id, turn = hand_off(api_client, api_key_a, locale="de")
    text = turn["reply"]["text"]
    assert "Unser Team ist gerade nicht erreichbar" in text
    assert "(Asia/Tokyo)" in text and "9:00" in text  # the route's zone, not UTC (00:00)
    assert the_handoff(tenant_a, conversation_id).outside_hours is True


# --- learn the ticket ---------------------------------------------------------------------------------------
def test_the_delivered_ticket_opens_the_handoff(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, sn_a: tuple[Connection, str], tickets: dict
) -> None:
    conversation_id, _ = hand_off(api_client, api_key_a)
    handoff = the_handoff(tenant_a, conversation_id)
    assert refresh(tenant_a, handoff).state == HandoffState.REQUESTED  # still in the outbox: wait
    tickets[sn_a[0].pk, "sys9"] = FakeTicket("sys9")
    ticket_delivered(tenant_a, handoff, "sys9")
    assert refresh(tenant_a, handoff).state == HandoffState.OPEN
    assert the_handoff(tenant_a, conversation_id).ticket_vendor_id == "sys9"


def test_a_dead_lettered_ticket_fails_the_handoff_and_the_bot_says_so(
    api_client: Client,
    api_key_a: IssuedKey,
    tenant_a: Tenant,
    sn_a: tuple[Connection, str],
    delivered: list,
) -> None:
    conversation_id, _ = hand_off(api_client, api_key_a, locale="fr")
    handoff = the_handoff(tenant_a, conversation_id)
    # The customer writes while the ticket is still in the outbox: the comment queues behind it.
    say(api_client, api_key_a, conversation_id, "Bonjour ?")
    with tenant_context(tenant_a):
        OutboxMessage.objects.filter(pk=handoff.ticket_outbox_id or 0).update(status=OutboxStatus.DEAD)
    assert refresh(tenant_a, handoff).state == HandoffState.FAILED
    with tenant_context(tenant_a):  # ... and is not left waiting for a ticket that will never exist
        [comment] = OutboxMessage.objects.filter(stream="ticket_comments")
        assert comment.status == OutboxStatus.DISCARDED and "could not be created" in comment.last_error
    handoff = the_handoff(tenant_a, conversation_id)
    assert handoff.resolution == "failed" and handoff.resolved_at is not None
    with tenant_context(tenant_a):
        assert Conversation.objects.get(pk=conversation_id).status == ConversationStatus.OPEN
    [(_, _, text)] = delivered
    assert text.startswith("Désolé, je n\u2019ai pas pu transmettre votre demande")


# --- agent → customer ---------------------------------------------------------------------------------------
def test_public_agent_comments_reach_the_customer_once_private_notes_and_hub_comments_never(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant, delivered: list
) -> None:
    conversation_id, handoff, ticket = opened
    ticket.comment("Internal: customer is VIP", public=False)
    ticket.comment("Guten Tag, ich kümmere mich darum.", author="Beth Anglin")
    ticket.comment("Der Kunde schreibt: Hallo?", from_hub=True)
    result = refresh(tenant_a, handoff)
    assert result.delivered == 1
    [agent] = messages(tenant_a, conversation_id, Role.AGENT)
    assert agent.text == "Guten Tag, ich kümmere mich darum." and agent.author == "Beth Anglin"
    assert agent.idempotency_key == "agent:c2"
    assert [text for _, _, text in delivered] == ["Guten Tag, ich kümmere mich darum."]
    handoff = the_handoff(tenant_a, conversation_id)
    assert handoff.first_agent_reply_at is not None and handoff.ticket_number == "INC0010001"
    assert handoff.thread_cursor["seen_ids"]
    # Read again (a webhook after a poll): nothing new, nothing twice.
    assert refresh(tenant_a, handoff).delivered == 0
    ticket.comment("Ist das Problem gelöst?", second=5)
    assert refresh(tenant_a, handoff).delivered == 1
    assert agent_texts(tenant_a, conversation_id) == [
        "Guten Tag, ich kümmere mich darum.",
        "Ist das Problem gelöst?",
    ]
    assert all("VIP" not in m.text for m in messages(tenant_a, conversation_id))


def test_a_comment_read_again_from_an_old_cursor_is_stored_once(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant
) -> None:
    """The cursor is a hint; the idempotency key is the guarantee (a cursor lost or rewound re-reads)."""
    conversation_id, handoff, ticket = opened
    ticket.comment("Erste Antwort")
    refresh(tenant_a, handoff)
    with tenant_context(tenant_a):
        Handoff.objects.filter(pk=handoff.pk).update(thread_cursor={})
    assert refresh(tenant_a, handoff).delivered == 0
    assert agent_texts(tenant_a, conversation_id) == ["Erste Antwort"]


def test_a_vendor_outage_loses_nothing_and_delivers_in_order_afterwards(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant
) -> None:
    conversation_id, handoff, ticket = opened
    ticket.comment("Eins")
    refresh(tenant_a, handoff)
    ticket.comment("Zwei", second=10)
    ticket.comment("Drei", second=11)
    ticket.error = VendorUnavailable("503 from https://acme.service-now.example?token=pw-secret")
    before = the_handoff(tenant_a, conversation_id)
    result = refresh(tenant_a, handoff)
    assert result.delivered == 0 and result.state == HandoffState.OPEN
    after = the_handoff(tenant_a, conversation_id)
    assert after.thread_cursor == before.thread_cursor  # nothing skipped
    assert after.next_poll_at is not None and after.next_poll_at > timezone.now()
    assert agent_texts(tenant_a, conversation_id) == ["Eins"]
    ticket.error = None
    assert refresh(tenant_a, handoff).delivered == 2
    assert agent_texts(tenant_a, conversation_id) == ["Eins", "Zwei", "Drei"]


def test_a_permanent_vendor_error_backs_off_longer_and_keeps_the_handoff(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant
) -> None:
    conversation_id, handoff, ticket = opened
    ticket.error = ConnectorError("ticket sys1 not found", permanent=True, status=404)
    result = refresh(tenant_a, handoff)
    assert result.state == HandoffState.OPEN and "not found" in result.error
    after = the_handoff(tenant_a, conversation_id)
    assert after.next_poll_at is not None and after.next_poll_at > timezone.now() + timedelta(minutes=5)


@pytest.mark.django_db(transaction=True)
def test_racing_refreshes_store_each_comment_once(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant
) -> None:
    """A webhook-triggered and a poll-triggered refresh at the same moment: one stores, the other finds it."""
    conversation_id, handoff, ticket = opened
    for n in range(5):
        ticket.comment(f"Antwort {n}", second=20)  # five comments in one vendor second
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            with tenant_context(tenant_a):
                Handoff.objects.filter(pk=handoff.pk).update(thread_cursor={})  # each reads everything
                handoff_refresh(handoff_id=handoff.pk)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(agent_texts(tenant_a, conversation_id)) == [f"Antwort {n}" for n in range(5)]


# --- resume -------------------------------------------------------------------------------------------------
def test_a_resolved_ticket_gives_the_conversation_back_and_the_bot_asks_for_a_rating(
    opened: tuple[str, Handoff, FakeTicket],
    tenant_a: Tenant,
    api_client: Client,
    api_key_a: IssuedKey,
    delivered: list,
) -> None:
    conversation_id, handoff, ticket = opened
    ticket.comment("Erledigt, das Paket ist unterwegs.")
    ticket.state = TicketState.RESOLVED
    assert refresh(tenant_a, handoff).state == HandoffState.RESOLVED
    handoff = the_handoff(tenant_a, conversation_id)
    assert handoff.resolution == "resolved" and handoff.resolved_at is not None and handoff.csat_requested
    with tenant_context(tenant_a):
        assert Conversation.objects.get(pk=conversation_id).status == ConversationStatus.OPEN
    texts = [text for _, _, text in delivered]
    assert texts[0] == "Erledigt, das Paket ist unterwegs."
    assert texts[1].startswith("Unser Mitarbeiter hat Ihr Anliegen abgeschlossen")
    assert texts[2].startswith("Wie zufrieden sind Sie")
    # The rating, typed as the next message.
    reply = say(api_client, api_key_a, conversation_id, "4").json()["reply"]
    assert reply["text"] == "Vielen Dank für Ihre Bewertung!" and reply["intent"] == "csat"
    with tenant_context(tenant_a):
        [csat] = Feedback.objects.filter(kind=FeedbackKind.CSAT)
        assert csat.rating == 4 and csat.handoff_id == handoff.pk
    # A later "5" is an ordinary message, not a second rating.
    say(api_client, api_key_a, conversation_id, "5")
    with tenant_context(tenant_a):
        assert Feedback.objects.get(kind=FeedbackKind.CSAT).rating == 4
    assert refresh(tenant_a, handoff) is None  # finished: nothing to refresh


def test_the_agents_phrase_resumes_and_is_not_shown_to_the_customer(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant, settings: Any
) -> None:
    settings.HUB_HANDOFF_CSAT = False
    conversation_id, handoff, ticket = opened
    ticket.comment("Gern geschehen, schönen Tag noch! #BOT")
    assert refresh(tenant_a, handoff).state == HandoffState.RESOLVED
    assert agent_texts(tenant_a, conversation_id) == ["Gern geschehen, schönen Tag noch!"]
    handoff = the_handoff(tenant_a, conversation_id)
    assert handoff.resolution == "phrase" and not handoff.csat_requested
    bot = messages(tenant_a, conversation_id, Role.ASSISTANT)
    assert "Wie zufrieden" not in bot[-1].text


def test_a_comment_that_is_only_the_phrase_resumes_without_an_empty_message(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant
) -> None:
    conversation_id, handoff, ticket = opened
    ticket.comment("#bot")
    refresh(tenant_a, handoff)
    assert agent_texts(tenant_a, conversation_id) == []
    assert the_handoff(tenant_a, conversation_id).state == HandoffState.RESOLVED


def test_resume_phrase_strip() -> None:
    assert resume_phrase_strip("Done #bot thanks") == ("Done thanks", True)
    assert resume_phrase_strip("Nothing here") == ("Nothing here", False)


@pytest.mark.parametrize(
    ("text", "rating"),
    [("5", 5), (" 3 ", 3), ("4/5", 4), ("★★", 2), ("⭐⭐⭐⭐⭐", 5), ("1.", 1), ("6", None), ("0", None),
     ("12", None), ("five", None), ("", None), ("★★★★★★", None)],
)  # fmt: skip
def test_typed_ratings(text: str, rating: int | None) -> None:
    assert rating_of(text) == rating


# --- customer → agent ---------------------------------------------------------------------------------------
def test_while_handed_off_the_bot_stays_quiet_and_a_retry_is_one_message(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant, api_client: Client, api_key_a: IssuedKey
) -> None:
    conversation_id, _handoff, _ticket = opened
    first = say(api_client, api_key_a, conversation_id, "Wo bleibt mein Paket?", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 200
    body = first.json()
    assert body["reply"]["text"] is None and body["reply"]["handoff"] is True
    again = say(api_client, api_key_a, conversation_id, "Wo bleibt mein Paket?", HTTP_IDEMPOTENCY_KEY="k1")
    assert again.json()["message_id"] == body["message_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    users = messages(tenant_a, conversation_id, Role.USER)
    assert [m.text for m in users] == ["Wo bleibt mein Paket?"]
    assert not messages(tenant_a, conversation_id, Role.ASSISTANT)[-1].text.startswith("Wo")
    # Appended to the ticket through the outbox: after the ticket (same ordering key), once per message.
    say(api_client, api_key_a, conversation_id, "Und die Rechnung?")
    with tenant_context(tenant_a):
        ticket = OutboxMessage.objects.get(pk=_handoff.ticket_outbox_id or 0)
        comments = list(OutboxMessage.objects.filter(stream="ticket_comments").order_by("sequence"))
    assert [c.payload["body"] for c in comments] == ["Wo bleibt mein Paket?", "Und die Rechnung?"]
    assert {c.payload["ticket"] for c in comments} == {_handoff.ticket_external_id}
    assert all(c.ordering_key == ticket.ordering_key and c.sequence > ticket.sequence for c in comments)
    assert len({c.external_id for c in comments}) == 2


def test_a_handed_off_turn_streams_no_text(
    opened: tuple[str, Handoff, FakeTicket], api_client: Client, api_key_a: IssuedKey
) -> None:
    conversation_id, _handoff, _ticket = opened
    response = say(api_client, api_key_a, conversation_id, "Hallo?", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert "event: delta" not in body and '"text": null' in body


# --- poll ---------------------------------------------------------------------------------------------------
def test_the_poll_claims_due_handoffs_once_and_skips_an_open_breaker(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant, sn_a: tuple[Connection, str]
) -> None:
    _conversation_id, handoff, _ticket = opened
    with tenant_context(tenant_a):
        Handoff.objects.filter(pk=handoff.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert handoffs_due() == [(tenant_a.id, handoff.pk)]
    assert handoffs_due() == []  # claimed: not queued again while its refresh waits
    with tenant_context(tenant_a):
        Handoff.objects.filter(pk=handoff.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
        breaker = breaker_for(sn_a[0])
        for _ in range(20):
            breaker.record_failure()
    assert handoffs_due() == []


# --- CSAT endpoint ------------------------------------------------------------------------------------------
def csat(client: Client, key: IssuedKey, conversation_id: str, body: Any) -> Any:
    return client.post(
        f"/api/v1/conversations/{conversation_id}/csat", body, content_type=JSON, **key.headers
    )


def test_csat_endpoint_one_rating_per_handoff_bad_values_and_the_other_tenant(
    opened: tuple[str, Handoff, FakeTicket],
    tenant_a: Tenant,
    api_client: Client,
    api_key_a: IssuedKey,
    api_key_b: IssuedKey,
) -> None:
    conversation_id, handoff, ticket = opened
    assert csat(api_client, api_key_a, conversation_id, {"rating": 5}).status_code == 409  # not asked yet
    ticket.state = TicketState.CLOSED
    refresh(tenant_a, handoff)
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": "x"}, {}, {"rating": 3, "extra": 1}):
        response = csat(api_client, api_key_a, conversation_id, bad)
        assert response.status_code == 400, bad
    first = csat(api_client, api_key_a, conversation_id, {"rating": 2, "comment": "Zu langsam"})
    assert first.status_code == 201 and first.json()["rating"] == 2
    second = csat(api_client, api_key_a, conversation_id, {"rating": 3})
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    with tenant_context(tenant_a):
        [row] = Feedback.objects.filter(kind=FeedbackKind.CSAT)
        assert row.rating == 3 and row.handoff_id == handoff.pk
    assert csat(api_client, api_key_b, conversation_id, {"rating": 1}).status_code == 404


def test_the_transcript_shows_agent_messages_with_their_role(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant, api_client: Client, api_key_a: IssuedKey
) -> None:
    conversation_id, handoff, ticket = opened
    ticket.comment("Hallo, hier ist Beth.")
    refresh(tenant_a, handoff)
    response = api_client.get(f"/api/v1/conversations/{conversation_id}", **api_key_a.headers)
    assert response.status_code == 200
    roles = [(m["role"], m["text"]) for m in response.json()["messages"]]
    assert ("agent", "Hallo, hier ist Beth.") in roles


def test_another_tenants_handoff_message_is_not_a_message_here(
    opened: tuple[str, Handoff, FakeTicket], tenant_b: Tenant
) -> None:
    conversation_id, _handoff, _ticket = opened
    with tenant_context(tenant_b):
        assert not Message.objects.filter(conversation_id=conversation_id).exists()
        assert not Handoff.objects.exists()


def test_a_platform_message_while_handed_off_goes_to_the_ticket_once(
    opened: tuple[str, Handoff, FakeTicket], tenant_a: Tenant, channel_a: Any
) -> None:
    """channel_inbound's quiet path (WhatsApp, Slack, Teams, SMS): stored and appended, a redelivery not."""
    from apps.chat.principal import channel_principal
    from apps.chat.services import channel_inbound
    from apps.core.context import as_ref

    conversation_id, _handoff, _ticket = opened
    with tenant_context(tenant_a):
        principal = channel_principal(channel_a, as_ref(tenant_a))
        conversation = Conversation.objects.get(pk=conversation_id)
        for _ in range(2):  # the platform's retry of the same message id
            channel_inbound._handed_off_record(principal, conversation, "Bin noch da", "whatsapp:wamid.1")
        comments = list(OutboxMessage.objects.filter(stream="ticket_comments"))
    assert [m.text for m in messages(tenant_a, conversation_id, Role.USER)] == ["Bin noch da"]
    assert [c.payload["body"] for c in comments] == ["Bin noch da"]


def test_the_customers_comment_is_redacted_like_the_transcript(
    opened: tuple[str, Handoff, FakeTicket],
    tenant_a: Tenant,
    api_client: Client,
    api_key_a: IssuedKey,
    alice: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from apps.policies.services import policy_update

    policy_update(tenant=tenant_a, values={"redact_transcripts": True}, actor=alice)
    conversation_id, _handoff, _ticket = opened
    say(api_client, api_key_a, conversation_id, "Schreiben Sie an jane.doe@example.com bitte")
    with tenant_context(tenant_a):
        [comment] = OutboxMessage.objects.filter(stream="ticket_comments")
    assert "jane.doe@example.com" not in comment.payload["body"]
    assert "jane.doe@example.com" not in messages(tenant_a, conversation_id, Role.USER)[-1].text
    assert "jane.doe@example.com" not in caplog.text
