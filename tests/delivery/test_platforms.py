"""A later message (an agent's reply) reaches the customer on the messaging platform the conversation came
from: WhatsApp, Slack, Teams and SMS, through the outbox on the channel's platform account (the Django test
client for the customer's first message, the worker's service in-process, the outbox relay against each
platform's simulator). WhatsApp's 24-hour window: free text inside, the agent template after, held (and shown
in the console) without one."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.chat.models import Conversation, Message, Role
from apps.chat.selectors.delivery import channel_delivery
from apps.chat.services.delivery import WINDOW_CLOSED, message_deliver, window_open
from apps.core.context import tenant_context
from apps.integrations.models import OutboxMessage, OutboxStatus
from apps.observability import metrics
from apps.tenants.models import Role as TenantRole
from connectors.slack.simulator import SlackSimulator
from connectors.teams.simulator import TeamsSimulator
from connectors.twilio.simulator import TwilioSimulator
from connectors.whatsapp.simulator import WhatsAppSimulator, meta_json
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
from tests.delivery.helpers import agent_says
from tests.fixtures.auth import login_verified
from tests.fixtures.simulators import StartSimulator

pytestmark = pytest.mark.django_db

SIMULATORS: dict[str, type[Any]] = {
    "whatsapp": WhatsAppSimulator,
    "slack": SlackSimulator,
    "teams": TeamsSimulator,
    "sms": TwilioSimulator,
}


def wired_to(tenant: Any, kind: str, simulator: StartSimulator) -> Wired:
    sim = simulator(SIMULATORS[kind])
    sim.auto_status = False  # status reports are sent on purpose where a test wants them
    return wire(tenant, kind, sim)


@pytest.fixture(params=sorted(SIMULATORS))
def wired(request: pytest.FixtureRequest, tenant_a: Any, simulator: StartSimulator) -> Wired:
    return wired_to(tenant_a, request.param, simulator)


@pytest.fixture
def charlie_role() -> TenantRole:
    """An admin of tenant B: even so, nothing of tenant A's channels."""
    return TenantRole.ADMIN


@pytest.fixture
def whatsapp(tenant_a: Any, simulator: StartSimulator) -> Wired:
    return wired_to(tenant_a, "whatsapp", simulator)


def customer_writes(
    wired: Wired, text: str = "Hallo, ich brauche einen Menschen."
) -> tuple[Conversation, Any]:
    """The customer's first message: in, answered by the bot, the reply sent; then forget what was sent."""
    signed = message(wired, text)
    assert post(Client(), wired, signed).status_code == 200
    process_all(wired)
    relay(wired)
    wired.extra["seen"] = len(wired.sim.sent())  # the bot's answer: not this file's subject
    with tenant_context(wired.tenant):
        return Conversation.objects.get(channel_id=wired.channel.id), signed


def new_sent(wired: Wired) -> list[dict[str, Any]]:
    """What the platform accepted after the customer's first message was answered."""
    return wired.sim.sent()[wired.extra.get("seen", 0) :]


def new_texts(wired: Wired) -> list[str]:
    return sent_texts(wired)[wired.extra.get("seen", 0) :]


def handed_off_long_ago(wired: Wired, conversation: Conversation, *, hours: float) -> None:
    """The customer last wrote `hours` ago, for the hub and for the platform."""
    with tenant_context(wired.tenant):
        Message.objects.filter(conversation=conversation).update(
            created_at=timezone.now() - timedelta(hours=hours)
        )
    wired.sim.close_window(USER_PHONE, hours_ago=hours)


def set_template(wired: Wired, name: str = "agent_reply", language: str = "de") -> None:
    with tenant_context(wired.tenant):
        settings = {**wired.connection.settings, "agent_template": name, "agent_template_language": language}
        type(wired.connection).objects.filter(pk=wired.connection.pk).update(settings=settings)
        wired.connection.refresh_from_db()


def forget_breakers() -> None:
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    for key in client.scan_iter(match="*breaker*", count=1000):
        client.delete(key)


def counted(kind: str, outcome: str) -> float:
    return float(metrics.CHANNEL_MESSAGES.labels(kind=kind, direction="out", outcome=outcome)._value.get())


def test_an_agent_reply_reaches_the_customer_on_the_platform_with_the_right_recipient(
    wired: Wired, django_capture_on_commit_callbacks: Any
) -> None:
    conversation, first = customer_writes(wired)
    before = counted(wired.kind, "enqueued")
    with (
        tenant_context(wired.tenant) as tenant,
        django_capture_on_commit_callbacks(execute=True, using=tenant.db_alias),
    ):
        stored, delivery = agent_says(conversation, "Ihr Paket ist unterwegs und kommt morgen an.")
        queued = OutboxMessage.objects.get(pk=int(delivery.outbox_id or 0))
    assert delivery.route == "platform" and delivery.reason == ""
    assert queued.ordering_key == str(conversation.pk) and queued.payload["message_id"] == stored.pk
    assert counted(wired.kind, "enqueued") == before + 1
    assert relay(wired) == 1
    assert new_texts(wired) == ["Anna: Ihr Paket ist unterwegs und kommt morgen an."]
    sent = new_sent(wired)[-1]
    if wired.kind == "whatsapp":
        assert sent["type"] == "text" and sent["to"] == USER_PHONE.lstrip("+")
    elif wired.kind == "sms":
        assert sent["to"] == USER_PHONE
    elif wired.kind == "slack":  # in the thread of the customer's message
        assert sent["channel"] == SLACK_CHANNEL
        assert sent["thread_ts"] == json.loads(first.body)["event"]["ts"]
    else:
        assert sent["conversation_id"] == "a:1simPersonalChat"
    assert relay(wired) == 0 and len(new_sent(wired)) == 1  # exactly once
    with tenant_context(wired.tenant):
        assert Message.objects.get(pk=stored.pk).undelivered_at is None


def test_delivering_the_same_message_again_sends_it_once(whatsapp: Wired) -> None:
    conversation, _ = customer_writes(whatsapp)
    with tenant_context(whatsapp.tenant):
        stored, first = agent_says(conversation, "Einmal reicht.")
        again = message_deliver(conversation=conversation, message=stored)  # a caller's retry
    assert again.outbox_id == first.outbox_id
    relay(whatsapp)
    assert new_texts(whatsapp) == ["Anna: Einmal reicht."]


def test_a_long_reply_is_cut_to_the_platforms_limit_in_order(
    tenant_a: Any, simulator: StartSimulator
) -> None:
    wired = wired_to(tenant_a, "sms", simulator)
    conversation, _ = customer_writes(wired)
    text = " ".join(f"Satz {n} der langen Antwort." for n in range(120))
    with tenant_context(wired.tenant):
        agent_says(conversation, text, author="")
    while relay(wired):
        pass
    parts = new_texts(wired)
    assert len(parts) > 1 and " ".join(parts) == text  # no author: no prefix


def test_the_bots_own_later_message_has_no_author_prefix(whatsapp: Wired) -> None:
    conversation, _ = customer_writes(whatsapp)
    with tenant_context(whatsapp.tenant):
        agent_says(conversation, "Zurück beim Bot.", author="", role=Role.ASSISTANT)
    relay(whatsapp)
    assert new_texts(whatsapp) == ["Zurück beim Bot."]


def test_whatsapp_inside_the_window_sends_free_text(whatsapp: Wired) -> None:
    conversation, _ = customer_writes(whatsapp)
    set_template(whatsapp)  # configured, but not needed
    handed_off_long_ago(whatsapp, conversation, hours=23)
    with tenant_context(whatsapp.tenant):
        _, delivery = agent_says(conversation, "Noch rechtzeitig.")
    assert delivery.route == "platform" and delivery.reason == ""
    relay(whatsapp)
    (sent,) = new_sent(whatsapp)
    assert (sent["type"], sent["text"]) == ("text", "Anna: Noch rechtzeitig.")


def test_whatsapp_after_the_window_sends_the_template_when_configured(
    whatsapp: Wired, django_capture_on_commit_callbacks: Any
) -> None:
    conversation, _ = customer_writes(whatsapp)
    set_template(whatsapp)
    handed_off_long_ago(whatsapp, conversation, hours=30)
    before = counted("whatsapp", "template")
    with (
        tenant_context(whatsapp.tenant) as tenant,
        django_capture_on_commit_callbacks(execute=True, using=tenant.db_alias),
    ):
        stored, delivery = agent_says(conversation, "Entschuldigung für die Wartezeit.\nIhr Fall ist gelöst.")
    assert (delivery.route, delivery.reason) == ("platform", WINDOW_CLOSED)
    assert counted("whatsapp", "template") == before + 1
    assert relay(whatsapp) == 1
    (sent,) = new_sent(whatsapp)
    assert (sent["type"], sent["template"], sent["language"]) == ("template", "agent_reply", "de")
    assert sent["params"] == ["Anna: Entschuldigung für die Wartezeit. Ihr Fall ist gelöst."]
    assert sent["to"] == USER_PHONE.lstrip("+")
    with tenant_context(whatsapp.tenant):
        assert Message.objects.get(pk=stored.pk).undelivered_at is None


def test_whatsapp_after_the_window_without_a_template_is_held_and_the_console_says_why(
    whatsapp: Wired, alice_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    conversation, _ = customer_writes(whatsapp)
    handed_off_long_ago(whatsapp, conversation, hours=25)
    before = counted("whatsapp", "held")
    with (
        tenant_context(whatsapp.tenant) as tenant,
        django_capture_on_commit_callbacks(execute=True, using=tenant.db_alias),
    ):
        stored, delivery = agent_says(conversation, "Zu spät ohne Vorlage.")
        held = Message.objects.get(pk=stored.pk)
        assert not OutboxMessage.objects.filter(payload__message_id=stored.pk).exists()
    assert (delivery.route, delivery.reason) == ("held", WINDOW_CLOSED)
    assert held.undelivered_reason == WINDOW_CLOSED and held.undelivered_at is not None
    assert counted("whatsapp", "held") == before + 1
    assert relay(whatsapp) == 0 and new_sent(whatsapp) == []
    (item,) = channel_delivery(channel=whatsapp.channel).undelivered
    assert item.source == "held" and item.conversation_id == str(conversation.pk)
    assert "24-hour window" in item.reason
    page = alice_client.get(f"/t/{whatsapp.tenant.slug}/channels/{whatsapp.channel.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Undelivered messages" in html and "24-hour window had closed" in html
    assert "Zu spät ohne Vorlage." not in html  # the reason, not the customer's conversation


def test_a_text_refused_later_by_whatsapp_is_shown_as_refused(whatsapp: Wired, alice_client: Client) -> None:
    """Meta usually accepts a text after the window and reports the failure in a status webhook."""
    conversation, _ = customer_writes(whatsapp)
    whatsapp.sim.close_window(USER_PHONE, hours_ago=25)  # the platform's clock, not the hub's, says closed
    with tenant_context(whatsapp.tenant):
        agent_says(conversation, "Angenommen, dann abgelehnt.")
    assert relay(whatsapp) == 1
    (sent,) = new_sent(whatsapp)
    whatsapp.sim.register_webhook(None)
    status = whatsapp.sim.envelope(
        {
            "statuses": [
                {
                    "id": sent["id"],
                    "status": "failed",
                    "timestamp": "1",
                    "recipient_id": sent["to"],
                    "errors": [whatsapp.sim.window_error()],
                }
            ]
        }
    )
    body = meta_json(status)
    response = Client().post(
        whatsapp.path,
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=whatsapp.sim.sign(body)["X-Hub-Signature-256"],
    )
    assert response.status_code == 200
    (item,) = channel_delivery(channel=whatsapp.channel).undelivered
    assert item.source == "refused" and "window had closed before it was sent" in item.reason
    html = alice_client.get(f"/t/{whatsapp.tenant.slug}/channels/{whatsapp.channel.pk}/").content.decode()
    assert "Refused by the platform:" in html


def test_a_platform_outage_delivers_after_recovery_exactly_once(wired: Wired) -> None:
    conversation, _ = customer_writes(wired)
    wired.sim.inject(errors=[{"status": 503, "count": 100}])
    with tenant_context(wired.tenant):
        _, delivery = agent_says(conversation, "Antwort während des Ausfalls.")
        agent_says(conversation, "Und noch eine.")
    assert relay(wired) == 0 and new_texts(wired) == []
    with tenant_context(wired.tenant):
        row = OutboxMessage.objects.get(pk=int(delivery.outbox_id or 0))
        assert row.status == OutboxStatus.PENDING and row.attempts >= 1
        OutboxMessage.objects.filter(connection=wired.connection).update(next_attempt_at=row.created_at)
    wired.sim.clear_faults()
    forget_breakers()
    while relay(wired):
        pass
    assert new_texts(wired) == ["Anna: Antwort während des Ausfalls.", "Anna: Und noch eine."]  # in order
    with tenant_context(wired.tenant):
        statuses = set(
            OutboxMessage.objects.filter(connection=wired.connection).values_list("status", flat=True)
        )
    assert statuses == {OutboxStatus.DELIVERED}


def test_a_channel_without_its_platform_account_holds_the_message(whatsapp: Wired) -> None:
    conversation, _ = customer_writes(whatsapp)
    whatsapp.channel.platform_connection_id = None
    whatsapp.channel.save(update_fields=["platform_connection_id"])
    with tenant_context(whatsapp.tenant):
        stored, delivery = agent_says(conversation, "Wohin damit?")
        assert Message.objects.get(pk=stored.pk).undelivered_reason == "no_account"
    assert (delivery.route, delivery.reason) == ("held", "no_account")


def test_another_tenant_never_sees_the_undelivered_messages(
    whatsapp: Wired, client: Client, charlie: Any, tenant_b: Any
) -> None:
    conversation, _ = customer_writes(whatsapp)
    handed_off_long_ago(whatsapp, conversation, hours=25)
    with tenant_context(whatsapp.tenant):
        agent_says(conversation, "Nur für Mandant A.")
    login_verified(client, charlie)
    url = f"/t/{whatsapp.tenant.slug}/channels/{whatsapp.channel.pk}/"
    assert client.get(url).status_code == 404
    own = f"/t/{tenant_b.slug}/channels/{whatsapp.channel.pk}/"
    assert client.get(own).status_code == 404


def test_held_messages_are_sent_again_from_the_console_once_a_template_is_set(
    whatsapp: Wired, alice_client: Client, charlie: Any, tenant_b: Any
) -> None:
    conversation, _ = customer_writes(whatsapp)
    handed_off_long_ago(whatsapp, conversation, hours=26)
    with tenant_context(whatsapp.tenant):
        first, _ = agent_says(conversation, "Erste späte Antwort.")
        second, _ = agent_says(conversation, "Zweite späte Antwort.")
    page = alice_client.get(f"/t/{whatsapp.tenant.slug}/channels/{whatsapp.channel.pk}/").content.decode()
    assert "Send 2 held messages again" in page
    retry = f"/t/{whatsapp.tenant.slug}/channels/{whatsapp.channel.pk}/undelivered/retry/"
    other = Client()
    login_verified(other, charlie)  # another tenant's admin: nothing of A's, not even this button
    assert other.post(retry).status_code == 404
    assert (
        other.post(f"/t/{tenant_b.slug}/channels/{whatsapp.channel.pk}/undelivered/retry/").status_code == 404
    )
    assert alice_client.get(retry).status_code == 405
    still = alice_client.post(retry, follow=True)  # no template yet: held again, and the page says so
    assert "0 sent, 2 still held" in still.content.decode()
    set_template(whatsapp)
    assert alice_client.post(retry).status_code == 302
    relay(whatsapp)
    assert [m["params"] for m in new_sent(whatsapp)] == [
        ["Anna: Erste späte Antwort."],
        ["Anna: Zweite späte Antwort."],
    ]
    with tenant_context(whatsapp.tenant):
        assert not Message.objects.filter(pk__in=[first.pk, second.pk], undelivered_at__isnull=False).exists()
        events = list(
            AuditEvent.objects.filter(action="channel.undelivered_retried").values_list("changes", flat=True)
        )
    assert sorted((e["sent"], e["held"]) for e in events) == [(0, 2), (2, 0)]  # both tries audited
    assert channel_delivery(channel=whatsapp.channel).undelivered == []


def test_an_account_whose_credentials_no_longer_fit_holds_the_message_instead_of_failing(
    whatsapp: Wired,
) -> None:
    conversation, _ = customer_writes(whatsapp)
    with tenant_context(whatsapp.tenant):  # the endpoint changed behind the stored credentials' back
        settings = {**whatsapp.connection.settings, "api_base": "https://graph.elsewhere.example"}
        type(whatsapp.connection).objects.filter(pk=whatsapp.connection.pk).update(settings=settings)
        stored, delivery = agent_says(conversation, "Geht nicht an einen fremden Host.")
        assert Message.objects.filter(pk=stored.pk).exists()  # the caller's transaction went through
        assert not OutboxMessage.objects.filter(payload__message_id=stored.pk).exists()
    assert (delivery.route, delivery.reason) == ("held", "bad_account")
    (item,) = channel_delivery(channel=whatsapp.channel).undelivered
    assert "cannot be used" in item.reason


def test_the_window_ends_a_margin_before_24_hours_for_the_outbox_delay(whatsapp: Wired) -> None:
    conversation, _ = customer_writes(whatsapp)
    with tenant_context(whatsapp.tenant):
        last = Message.objects.filter(conversation=conversation, role=Role.USER).latest("id").created_at
        assert window_open(conversation=conversation, now=last + timedelta(hours=23, minutes=54))
        assert not window_open(conversation=conversation, now=last + timedelta(hours=23, minutes=56))
        Message.objects.filter(conversation=conversation, role=Role.USER).delete()
        assert not window_open(conversation=conversation)  # never wrote: no window at all


def test_a_held_message_goes_out_when_the_customer_writes_again_before_the_bots_answer(
    whatsapp: Wired, django_capture_on_commit_callbacks: Any
) -> None:
    """The customer's next message reopens WhatsApp's window: the held agent reply is sent then, once, ahead
    of the answer to the new message, and the console no longer lists it."""
    conversation, _ = customer_writes(whatsapp)
    handed_off_long_ago(whatsapp, conversation, hours=25)
    with (
        tenant_context(whatsapp.tenant) as tenant,
        django_capture_on_commit_callbacks(execute=True, using=tenant.db_alias),
    ):
        stored, delivery = agent_says(conversation, "Ihre Erstattung ist veranlasst.")
    assert delivery.route == "held"
    signed = message(whatsapp, "Hallo, gibt es etwas Neues?")
    assert post(Client(), whatsapp, signed).status_code == 200
    process_all(whatsapp)
    relay(whatsapp)
    texts = new_texts(whatsapp)
    assert texts[0] == "Ihre Erstattung ist veranlasst." or texts[0].endswith(
        ": Ihre Erstattung ist veranlasst."
    )
    assert sum("Ihre Erstattung ist veranlasst." in t for t in texts) == 1
    assert len(texts) >= 2  # then the bot's answer to the new message
    with tenant_context(whatsapp.tenant):
        assert Message.objects.get(pk=stored.pk).undelivered_at is None
    assert channel_delivery(channel=whatsapp.channel).undelivered == []
    process_all(whatsapp)
    relay(whatsapp)
    assert sum("Ihre Erstattung ist veranlasst." in t for t in new_texts(whatsapp)) == 1  # not again
