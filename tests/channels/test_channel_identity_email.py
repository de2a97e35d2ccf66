"""Slack and Teams users carry the e-mail their workspace's (tenant's) directory vouches for, so order status
opens for them: only their own orders; a lookup that fails leaves the turn without an e-mail, never failed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from apps.chat.models import Action, Channel, Conversation
from apps.chat.services import channel_inbound
from apps.chat.services.identity import conversation_identity
from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage
from apps.observability import metrics
from connectors.slack.channel import SlackAdapter
from tests.channels.platforms import Signed, Wired, message, post, process_all, wire
from tests.identity.helpers import order

pytestmark = pytest.mark.django_db(databases="__all__")


def _orders_allowed(w: Wired) -> Wired:
    Channel.objects.filter(pk=w.channel.pk).update(allowed_actions=Action.values)
    return w


def _slack_dm(w: Wired, user: str, text: str) -> Signed:
    """A direct message from `user` (its own DM channel: its own conversation)."""
    event = w.sim.message_event(user=user, channel=f"D{user[1:]}", text=text, channel_type="im")
    body = json.dumps(event, separators=(",", ":")).encode()
    return Signed(body, w.sim.sign(body), "application/json", event["event_id"])


def _reply(w: Wired) -> str:
    """The text of the last reply the turn put in the outbox."""
    with tenant_context(w.tenant):
        last = OutboxMessage.objects.filter(connection=w.connection).order_by("-created_at").first()
    assert last is not None
    return str(last.payload["text"])


def _identity(w: Wired) -> Any:
    with tenant_context(w.tenant):
        conversation = Conversation.objects.filter(channel_id=w.channel.id).order_by("-created_at").first()
        assert conversation is not None
        return conversation_identity(conversation)


def test_a_slack_user_whose_workspace_email_is_the_orders_gets_its_status(
    tenant_a: Any, sims: dict[str, Any], offline_sf_conn: Connection
) -> None:
    order(tenant_a, offline_sf_conn, number="00000123", email="alice@example.com")
    w = _orders_allowed(wire(tenant_a, "slack", sims["slack"]))
    post(Client(), w, message(w, "Where is my order 123?"))  # from U0SIMUSER1, alice@example.com
    assert process_all(w) == ["done"]
    identity = _identity(w)
    assert identity.user_id == "slack:U0SIMUSER1" and identity.email == "alice@example.com"
    assert "Shipped" in _reply(w)


def test_a_slack_user_whose_email_is_not_the_orders_gets_no_order_data(
    tenant_a: Any, sims: dict[str, Any], offline_sf_conn: Connection
) -> None:
    order(tenant_a, offline_sf_conn, number="00000123", email="alice@example.com")
    sims["slack"].add_user("U0BOB", name="bob", email="bob@example.com")
    w = _orders_allowed(wire(tenant_a, "slack", sims["slack"]))
    post(Client(), w, _slack_dm(w, "U0BOB", "Where is my order 123?"))
    assert process_all(w) == ["done"]
    assert _identity(w).email == "bob@example.com"
    reply = _reply(w)
    assert "Shipped" not in reply and "4711" not in reply


def test_a_slack_connect_user_from_another_organisation_gets_no_email(
    tenant_a: Any, sims: dict[str, Any], offline_sf_conn: Connection
) -> None:
    order(tenant_a, offline_sf_conn, number="00000123", email="alice@example.com")
    sims["slack"].add_user("U0MALLORY", name="mallory", email="alice@example.com", team_id="T0OTHERORG")
    w = _orders_allowed(wire(tenant_a, "slack", sims["slack"]))
    post(Client(), w, _slack_dm(w, "U0MALLORY", "Where is my order 123?"))
    process_all(w)
    assert _identity(w).email == ""
    assert "Shipped" not in _reply(w)


def test_a_teams_member_of_the_bots_tenant_gets_their_order(
    tenant_a: Any, sims: dict[str, Any], offline_sf_conn: Connection
) -> None:
    order(tenant_a, offline_sf_conn, number="00000123", email="alice@example.com")
    w = _orders_allowed(wire(tenant_a, "teams", sims["teams"]))
    with tenant_context(tenant_a):  # a single-tenant bot: its own directory vouches for its members
        settings = dict(w.connection.settings or {})
        Connection.objects.filter(pk=w.connection.pk).update(
            settings={**settings, "tenant_id": w.sim.tenant_id}
        )
    post(Client(), w, message(w, "Where is my order 123?"))
    assert process_all(w) == ["done"]
    assert _identity(w).email == "alice@example.com"
    assert "Shipped" in _reply(w)


def test_a_failed_lookup_answers_without_an_email_and_is_asked_again_later(
    tenant_a: Any, sims: dict[str, Any], offline_sf_conn: Connection
) -> None:
    order(tenant_a, offline_sf_conn, number="00000123", email="alice@example.com")
    w = _orders_allowed(wire(tenant_a, "slack", sims["slack"]))
    unavailable = metrics.CHANNEL_MESSAGES.labels(kind="slack", direction="in", outcome="email_unavailable")
    before = float(unavailable._value.get())
    w.sim.inject(outage="503")
    try:
        post(Client(), w, _slack_dm(w, "U0SIMUSER1", "Where is my order 123?"))
        assert process_all(w) == ["done"]  # the turn ran
    finally:
        w.sim.clear_faults()
    identity = _identity(w)
    assert identity is not None and identity.email == ""
    assert "Shipped" not in _reply(w)
    assert float(unavailable._value.get()) == before + 1
    # Not cached: the same user's next conversation (a thread in a channel) asks again, and gets it.
    post(Client(), w, message(w, "Where is my order 123?"))
    process_all(w)
    assert _identity(w).email == "alice@example.com"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The senders whose e-mail the Slack adapter was asked for, in order."""
    calls: list[str] = []
    real = SlackAdapter.user_email

    def counted(self: SlackAdapter, *, sender: str, reply_ref: Any) -> str:
        calls.append(sender)
        return real(self, sender=sender, reply_ref=reply_ref)

    monkeypatch.setattr(SlackAdapter, "user_email", counted)
    return calls


def test_the_email_is_cached_per_user_and_encrypted_there(
    tenant_a: Any, sims: dict[str, Any], lookups: list[str]
) -> None:
    w = wire(tenant_a, "slack", sims["slack"])
    post(Client(), w, _slack_dm(w, "U0SIMUSER1", "Hello"))
    post(Client(), w, message(w, "Hello again"))  # another conversation (a channel thread), same user
    process_all(w)
    assert lookups == ["U0SIMUSER1"]
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    raw = b"".join(client.get(k) or b"" for k in client.scan_iter(match="*chat:platform-email:*"))
    assert raw and b"alice@example.com" not in raw
    with tenant_context(tenant_a):
        identities = [conversation_identity(c) for c in Conversation.objects.filter(channel_id=w.channel.id)]
    assert len(identities) == 2
    assert {i.email if i else None for i in identities} == {"alice@example.com"}


def test_phone_platforms_never_look_an_email_up(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no directory to ask")

    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    post(Client(), w, message(w, "Hallo"))
    monkeypatch.setattr(channel_inbound, "channel_adapter", forbidden)  # the worker's only platform call
    assert process_all(w) == ["done"]
    assert _identity(w).phone == "+4915112345678"


def test_a_permanent_refusal_is_kept_as_no_email_for_a_while(
    tenant_a: Any, sims: dict[str, Any], lookups: list[str]
) -> None:
    w = wire(tenant_a, "slack", sims["slack"])
    post(Client(), w, _slack_dm(w, "U0GHOST", "Hello"))  # users.info: user_not_found, a permanent error
    event = w.sim.message_event(user="U0GHOST", channel="C0SIMCHAN1", text="Hello in a channel")
    body = json.dumps(event, separators=(",", ":")).encode()
    post(Client(), w, Signed(body, w.sim.sign(body), "application/json", event["event_id"]))
    assert process_all(w) == ["done", "done"]  # two conversations, both answered
    assert lookups == ["U0GHOST"]  # the second did not ask again
    assert _identity(w).email == ""
