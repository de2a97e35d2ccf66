"""Slack adapter: every inbound seam attacked, send() against the simulator, slack-sdk unchanged on it."""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from connectors.errors import (
    AddressNotAllowed,
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    VendorUnavailable,
)
from connectors.messaging import MAX_WEBHOOK_BYTES, PayloadInvalid, SignatureInvalid
from connectors.slack.channel import SlackAdapter, is_retry
from connectors.slack.simulator import SlackSimulator
from connectors.testing import error_texts, simulator_session
from tests.connectors.channel_receiver import receiver

URL = "https://hub.example/chat/webhooks/slack/abc"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackSimulator]:
    simulator = SlackSimulator(state_dir=tmp_path_factory.mktemp("slack")).start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _clean(sim: SlackSimulator) -> Iterator[None]:
    yield
    sim.clear_faults()
    sim.closed_channels.clear()


def adapter(sim: SlackSimulator, **overrides: Any) -> SlackAdapter:
    d = sim.describe()
    config = {"signing_secret": d["signing_secret"], "bot_token": d["bot_token"],
              "bot_user_id": d["bot_user_id"], "api_base": d["api_base"], **overrides}  # fmt: skip
    return SlackAdapter(config=config, session=simulator_session(sim, max_retries=0))


def signed(sim: SlackSimulator, payload: Any, **sign: Any) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return sim.sign(body, **sign), body


def inbound(sim: SlackSimulator, **event: Any) -> Any:
    """Verify and parse one simulated event; return the WebhookEvents."""
    headers, body = signed(sim, sim.message_event(**{"user": "U1ALICE", "channel": "C1SUPPORT",
                                                     "text": "hi", **event}))  # fmt: skip
    a = adapter(sim)
    a.verify(url=URL, headers=headers, body=body, now=time.time())
    return a.parse(headers=headers, body=body)


# --- verify -----------------------------------------------------------------------------------------


def test_signature_accepted_and_message_parsed(sim: SlackSimulator) -> None:
    payload = sim.message_event(user="U1ALICE", channel="C1SUPPORT", text="Wo ist meine Bestellung?")
    headers, body = signed(sim, payload)
    a = adapter(sim)
    a.verify(url=URL, headers=headers, body=body, now=time.time())
    events = a.parse(headers=headers, body=body)
    assert events.ignored == () and events.answer is None
    (message,) = events.messages
    ts = payload["event"]["ts"]
    assert message.platform_message_id == f"C1SUPPORT:{ts}"
    assert message.sender == "U1ALICE"
    assert message.sender_verified is True
    assert message.text == "Wo ist meine Bestellung?"
    assert message.conversation_key == f"C1SUPPORT:{ts}"
    assert dict(message.reply_ref) == {"channel": "C1SUPPORT", "thread_ts": ts}
    assert message.sent_at is not None and abs(message.sent_at.timestamp() - float(ts)) < 1


def test_header_names_are_case_insensitive(sim: SlackSimulator) -> None:
    headers, body = signed(sim, {"type": "url_verification", "challenge": "x"})
    lower = {k.lower(): v for k, v in headers.items()}
    adapter(sim).verify(url=URL, headers=lower, body=body, now=time.time())


def test_wrong_secret_is_refused_without_leaking_it(sim: SlackSimulator) -> None:
    headers, body = signed(
        sim, sim.message_event(user="U1", channel="C1X", text="hi"), secret="not-the-secret"
    )
    with pytest.raises(SignatureInvalid) as info:
        adapter(sim).verify(url=URL, headers=headers, body=body, now=time.time())
    assert info.value.reason == "mismatch"
    for text in error_texts(info.value):
        assert sim.signing_secret not in text
        assert headers["X-Slack-Signature"] not in text


@pytest.mark.parametrize("position", [0, 10, -2])
def test_one_tampered_byte_is_refused(sim: SlackSimulator, position: int) -> None:
    headers, body = signed(sim, sim.message_event(user="U1", channel="C1X", text="pay 10 EUR"))
    tampered = bytearray(body)
    tampered[position] ^= 0x01
    with pytest.raises(SignatureInvalid) as info:
        adapter(sim).verify(url=URL, headers=headers, body=bytes(tampered), now=time.time())
    assert info.value.reason == "mismatch"


def test_invalid_utf8_body_is_a_mismatch_not_a_crash(sim: SlackSimulator) -> None:
    headers, body = signed(sim, {"type": "url_verification", "challenge": "x"})
    with pytest.raises(SignatureInvalid, match="mismatch"):
        adapter(sim).verify(url=URL, headers=headers, body=body + b"\xff", now=time.time())


@pytest.mark.parametrize("missing", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
def test_missing_header_is_refused(sim: SlackSimulator, missing: str) -> None:
    headers, body = signed(sim, {"type": "url_verification", "challenge": "x"})
    del headers[missing]
    with pytest.raises(SignatureInvalid) as info:
        adapter(sim).verify(url=URL, headers=headers, body=body, now=time.time())
    assert info.value.reason == "missing"


def test_malformed_timestamp_is_refused(sim: SlackSimulator) -> None:
    headers, body = signed(sim, {"type": "url_verification", "challenge": "x"})
    headers["X-Slack-Request-Timestamp"] = "yesterday"
    with pytest.raises(SignatureInvalid) as info:
        adapter(sim).verify(url=URL, headers=headers, body=body, now=time.time())
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(("skew", "accepted"), [(-299, True), (299, True), (-301, False), (301, False)])
def test_timestamp_window_is_five_minutes_of_the_given_clock(
    sim: SlackSimulator, skew: int, accepted: bool
) -> None:
    now = 1_750_000_000
    headers, body = signed(sim, {"type": "url_verification", "challenge": "x"}, timestamp=now + skew)
    a = adapter(sim)
    if accepted:
        a.verify(url=URL, headers=headers, body=body, now=now)
    else:
        with pytest.raises(SignatureInvalid) as info:
            a.verify(url=URL, headers=headers, body=body, now=now)
        assert info.value.reason == "stale"


def test_oversized_body_is_refused_before_any_hashing_or_parsing(sim: SlackSimulator) -> None:
    body = b'{"type":"event_callback","pad":"' + b"x" * MAX_WEBHOOK_BYTES + b'"}'
    headers = sim.sign(body)
    a = adapter(sim)
    with pytest.raises(PayloadInvalid, match="exceeds"):
        a.verify(url=URL, headers=headers, body=body, now=time.time())
    with pytest.raises(PayloadInvalid, match="exceeds"):
        a.parse(headers=headers, body=body)


def test_retry_headers_are_exposed(sim: SlackSimulator) -> None:
    assert not is_retry({})
    assert not is_retry({"X-Slack-Retry-Num": "0"})
    assert is_retry({"x-slack-retry-num": "2", "x-slack-retry-reason": "http_timeout"})


# --- parse ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b"\xff\xfe", b'{"type": "event_callback", "event": {"type": "message"}}'],
)
def test_malformed_payload_is_payload_invalid(sim: SlackSimulator, body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        adapter(sim).parse(headers={}, body=body)


def test_message_without_user_or_channel_is_payload_invalid(sim: SlackSimulator) -> None:
    payload = sim.message_event(user="U1", channel="C1X", text="hi")
    del payload["event"]["channel"]
    with pytest.raises(PayloadInvalid, match="without user, channel or ts"):
        adapter(sim).parse(headers={}, body=json.dumps(payload).encode())


def test_url_verification_is_answered_with_the_challenge(sim: SlackSimulator) -> None:
    events = adapter(sim).parse(
        headers={}, body=b'{"type":"url_verification","challenge":"3eZbrw1a","token":"t"}'
    )
    assert events.messages == ()
    assert events.answer is not None
    assert events.answer.status == 200
    assert events.answer.content_type == "application/json"
    assert json.loads(events.answer.body) == {"challenge": "3eZbrw1a"}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"bot_id": "B0OTHER"}, "bot_message"),
        ({"subtype": "bot_message"}, "bot_message"),
        ({"user": "U0HUBBOT"}, "bot_message"),
        ({"subtype": "message_changed"}, "subtype:message_changed"),
        ({"subtype": "channel_join"}, "subtype:channel_join"),
        ({"subtype": "file_share", "text": "", "files": [{"id": "F1"}]}, "unsupported:file"),
        ({"text": "", "files": [{"id": "F1"}]}, "unsupported:file"),
        ({"text": "<@U0HUBBOT>"}, "empty"),
        ({"event_type": "reaction_added"}, "unknown_event:reaction_added"),
        ({"event_type": "<script>"}, "unknown_event:?"),
    ],
)
def test_events_we_do_not_answer_are_ignored_with_a_reason(
    sim: SlackSimulator, event: dict[str, Any], reason: str
) -> None:
    events = inbound(sim, **event)
    assert events.messages == ()
    assert events.ignored == (reason,)


def test_unknown_envelope_type_is_ignored(sim: SlackSimulator) -> None:
    body = json.dumps({"type": "app_rate_limited", "team_id": "T1", "minute_rate_limited": 1}).encode()
    assert adapter(sim).parse(headers={}, body=body).ignored == ("unknown_type:app_rate_limited",)


def test_the_bots_own_posted_message_echoed_back_is_ignored(sim: SlackSimulator) -> None:
    adapter(sim).send(reply_ref={"channel": "C1ECHO", "thread_ts": ""}, text="echo me")
    posted = sim.sent("C1ECHO")[-1]
    echo = {k: v for k, v in posted.items() if k not in ("channel", "thread_ts")}
    payload = sim.message_event(user=sim.bot_user_id, channel="C1ECHO", text="x")
    payload["event"] = {**echo, "channel": "C1ECHO", "event_ts": posted["ts"], "channel_type": "channel"}
    headers, body = signed(sim, payload)
    a = adapter(sim)
    a.verify(url=URL, headers=headers, body=body, now=time.time())
    assert a.parse(headers=headers, body=body).ignored == ("bot_message",)


def test_threads_are_conversations_and_replies_stay_in_them(sim: SlackSimulator) -> None:
    (reply,) = inbound(sim, text="follow-up", thread_ts="1700000000.000100").messages
    assert reply.conversation_key == "C1SUPPORT:1700000000.000100"
    assert dict(reply.reply_ref) == {"channel": "C1SUPPORT", "thread_ts": "1700000000.000100"}


def test_a_direct_message_channel_is_one_conversation_answered_in_place(sim: SlackSimulator) -> None:
    first = inbound(sim, channel="D1ALICE", channel_type="im", text="hello").messages[0]
    second = inbound(sim, channel="D1ALICE", channel_type="im", text="again").messages[0]
    assert first.conversation_key == second.conversation_key == "D1ALICE"
    assert dict(first.reply_ref) == {"channel": "D1ALICE", "thread_ts": ""}
    assert first.platform_message_id != second.platform_message_id


def test_bot_mention_is_stripped_and_entities_decoded(sim: SlackSimulator) -> None:
    (message,) = inbound(
        sim, event_type="app_mention", text="<@U0HUBBOT> is 3 &lt; 5 &amp; <@U2BOB> ok?"
    ).messages
    assert message.text == "is 3 < 5 & <@U2BOB> ok?"


def test_retry_and_the_mention_twin_share_one_dedup_id(sim: SlackSimulator) -> None:
    """Slack delivers a mention as `message` and `app_mention` (two event_ids); retries repeat one."""
    ts = sim.new_ts()
    message = inbound(sim, ts=ts, text="<@U0HUBBOT> help", event_id="Ev1").messages[0]
    retry = inbound(sim, ts=ts, text="<@U0HUBBOT> help", event_id="Ev1").messages[0]
    twin = inbound(sim, ts=ts, text="<@U0HUBBOT> help", event_type="app_mention", event_id="Ev2").messages[0]
    assert message.platform_message_id == retry.platform_message_id == twin.platform_message_id
    assert message.platform_message_id == f"C1SUPPORT:{ts}"


# --- send -------------------------------------------------------------------------------------------


def test_send_posts_exactly_the_message_in_the_thread(sim: SlackSimulator) -> None:
    before = len(sim.sent("C1SEND"))
    sent = adapter(sim).send(
        reply_ref={"channel": "C1SEND", "thread_ts": "1700000000.000200"}, text="Grüße ✓"
    )
    messages = sim.sent("C1SEND")
    assert len(messages) == before + 1
    assert messages[-1]["text"] == "Grüße ✓"
    assert messages[-1]["thread_ts"] == "1700000000.000200"
    assert sent.platform_message_id == messages[-1]["ts"]
    assert sent.segments == 1


def test_send_without_thread_posts_to_the_channel(sim: SlackSimulator) -> None:
    adapter(sim).send(reply_ref={"channel": "D1DM", "thread_ts": ""}, text="hi")
    assert sim.sent("D1DM")[-1]["thread_ts"] is None


def test_rate_limit_carries_retry_after(sim: SlackSimulator) -> None:
    sim.inject(rate_limit={"count": 1, "retry_after": 7})
    with pytest.raises(RateLimited) as info:
        adapter(sim).send(reply_ref={"channel": "C1X"}, text="hi")
    assert info.value.retry_after == 7.0
    assert not info.value.permanent
    assert info.value.code == "ratelimited"


@pytest.mark.parametrize(
    ("config", "code"),
    [({"bot_token": "xoxb-wrong"}, "invalid_auth"), ({"bot_token": " "}, None)],
)
def test_invalid_token_is_auth_failed(sim: SlackSimulator, config: dict[str, str], code: str | None) -> None:
    if code is None:
        with pytest.raises(InvalidConfig, match="bot_token is required"):
            adapter(sim, **config)
        return
    with pytest.raises(AuthFailed) as info:
        adapter(sim, **config).send(reply_ref={"channel": "C1X"}, text="hi")
    assert info.value.permanent
    assert info.value.code == code


def test_revoked_token_is_auth_failed(sim: SlackSimulator) -> None:
    sim.inject(expire_tokens=True)
    with pytest.raises(AuthFailed) as info:
        adapter(sim).send(reply_ref={"channel": "C1X"}, text="hi")
    assert info.value.code == "token_revoked"


@pytest.mark.parametrize(("channel", "code"), [("nope", "channel_not_found"), ("C1CLOSED", "not_in_channel")])
def test_channel_errors_are_permanent_with_their_code(sim: SlackSimulator, channel: str, code: str) -> None:
    sim.closed_channels.add("C1CLOSED")
    with pytest.raises(ConnectorError) as info:
        adapter(sim).send(reply_ref={"channel": channel}, text="hi")
    assert type(info.value) is ConnectorError
    assert info.value.permanent
    assert info.value.code == code


@pytest.mark.parametrize(
    "fault",
    [
        {"errors": [{"status": 500, "count": 1}]},
        {"errors": [{"status": 503, "count": 1}]},
        {"outage": "503"},
        {"outage": "reset"},
        {"malformed": {"kind": "garbage"}},
        {"malformed": {"kind": "truncated"}},
    ],
)
def test_outages_and_garbage_are_transient(sim: SlackSimulator, fault: dict[str, Any]) -> None:
    sim.inject(**fault)
    with pytest.raises(VendorUnavailable) as info:
        adapter(sim).send(reply_ref={"channel": "C1X"}, text="hi")
    assert not info.value.permanent


def test_timeout_is_transient(sim: SlackSimulator) -> None:
    sim.inject(latency_ms=800)
    a = adapter(sim)
    assert a.session is not None
    a.session.timeout = (0.5, 0.3)
    with pytest.raises(VendorUnavailable, match="Timed out"):
        a.send(reply_ref={"channel": "C1X"}, text="hi")


def test_no_secret_in_errors_or_logs(sim: SlackSimulator, caplog: pytest.LogCaptureFixture) -> None:
    secrets = {sim.bot_token, sim.signing_secret}
    caught: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for fault in ({"malformed": {"kind": "garbage"}}, {"rate_limit": {"count": 1}}, {"outage": "503"}):
            sim.clear_faults()
            sim.inject(**fault)
            with pytest.raises(ConnectorError) as info:
                adapter(sim).send(reply_ref={"channel": "C1X"}, text="hi")
            caught.append(info.value)
        sim.clear_faults()
        with pytest.raises(AuthFailed) as auth:
            adapter(sim, bot_token="xoxb-typo-" + sim.bot_token).test()
        caught.append(auth.value)
    assert caplog.records, "the SDK and the session log at DEBUG: the check must see their lines"
    for secret in secrets:
        assert secret not in caplog.text
        for exc in caught:
            assert all(secret not in text for text in error_texts(exc))


def test_web_client_goes_through_the_guarded_session(sim: SlackSimulator) -> None:
    """A private address is refused by the session's guard: the SDK's own urllib transport is not used."""
    a = adapter(sim, api_base="https://10.1.2.3/api/")
    with pytest.raises(AddressNotAllowed):
        a.send(reply_ref={"channel": "C1X"}, text="hi")


def test_test_call_uses_auth_test_and_checks_the_bot_user(sim: SlackSimulator) -> None:
    a = adapter(sim, bot_user_id="")
    a.test()
    assert a.bot_user_id == sim.bot_user_id
    with pytest.raises(InvalidConfig, match="belongs to user"):
        adapter(sim, bot_user_id="U0SOMEONE").test()


def test_config_fields() -> None:
    fields = {f.name: f for f in SlackAdapter.config_fields}
    assert fields["signing_secret"].secret and fields["bot_token"].secret
    assert fields["api_base"].url and fields["api_base"].default == "https://slack.com/api/"
    assert SlackAdapter.kind == "slack"
    assert SlackAdapter.max_text == 4000
    with pytest.raises(InvalidConfig, match="signing_secret"):
        SlackAdapter(config={"bot_token": "xoxb-1"})


# --- the simulator, end to end and against slack-sdk unchanged ----------------------------------------


def test_simulated_message_reaches_the_webhook_and_the_reply_reaches_slack(sim: SlackSimulator) -> None:
    a = adapter(sim)
    with receiver(a) as hook:
        answer = sim.url_verification(hook.url)
        assert answer.status_code == 200
        assert set(answer.json()) == {"challenge"}
        response = sim.deliver_message(hook.url, "U1ALICE", "C1E2E", "Status of order 42?", retry_num=1)
        assert response.status_code == 200
        forged = sim.post(hook.url, sim.message_event(user="U1", channel="C1E2E", text="x")
                          | {"event_id": "EvForged"}, retry_num=0)  # fmt: skip
        assert forged.status_code == 200  # signed by the simulator, so genuine
    message = hook.events[1].messages[0]
    assert message.text == "Status of order 42?"
    a.send(reply_ref=message.reply_ref, text="Order 42 has shipped.")
    reply = sim.sent("C1E2E")[-1]
    assert reply["text"] == "Order 42 has shipped."
    assert reply["thread_ts"] == message.reply_ref["thread_ts"]


def test_simulator_signatures_satisfy_slack_sdks_own_verifier(sim: SlackSimulator) -> None:
    headers, body = signed(sim, sim.message_event(user="U1", channel="C1X", text="hi"))
    assert SignatureVerifier(sim.signing_secret).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)


def test_slack_sdk_web_client_unchanged_against_the_simulator(sim: SlackSimulator) -> None:
    assert sim.ca_bundle is not None
    context = ssl.create_default_context(cafile=sim.ca_bundle)
    client = WebClient(token=sim.bot_token, base_url=f"{sim.base_url}/api/", ssl=context)
    assert client.auth_test()["user_id"] == sim.bot_user_id
    response = client.chat_postMessage(channel="C1SDK", text="from the SDK", thread_ts="1700000000.000300")
    assert response["ok"] and response["message"]["text"] == "from the SDK"
    assert sim.sent("C1SDK")[-1]["thread_ts"] == "1700000000.000300"


def test_simulator_is_registered(tmp_path: Path) -> None:
    from connectors.simulators import SIMULATORS, simulator_class

    assert simulator_class("slack") is SlackSimulator
    assert "slack" in SIMULATORS
    d = SlackSimulator(state_dir=tmp_path).describe()
    assert {"api_base", "signing_secret", "bot_token", "bot_user_id"} <= set(d)


# --- the workspace-verified e-mail (users.info) -------------------------------------------------------------


def test_user_email_is_the_confirmed_address_of_a_member_of_the_installed_workspace(
    sim: SlackSimulator,
) -> None:
    sim.add_user("U0ANN", name="ann", email="Ann@Example.com")
    assert adapter(sim).user_email(sender="U0ANN", reply_ref={"channel": "D0ANN"}) == "Ann@Example.com"


@pytest.mark.parametrize(
    "user",
    [
        {"team_id": "T0OTHERORG"},  # Slack Connect: another organisation's directory vouches, not ours
        {"email_confirmed": False},
        {"is_bot": True},
        {"deleted": True},
        {"email": ""},
    ],
)
def test_user_email_is_empty_when_the_workspace_does_not_vouch(
    sim: SlackSimulator, user: dict[str, Any]
) -> None:
    sim.add_user("U0EVE", name="eve", **{"email": "ann@example.com", **user})
    assert adapter(sim).user_email(sender="U0EVE", reply_ref={}) == ""


def test_user_email_without_the_email_scope_is_empty(sim: SlackSimulator) -> None:
    sim.email_scope = False
    try:
        assert adapter(sim).user_email(sender="U0SIMUSER1", reply_ref={}) == ""
    finally:
        sim.email_scope = True


def test_user_email_failures_are_typed(sim: SlackSimulator) -> None:
    with pytest.raises(ConnectorError) as unknown:
        adapter(sim).user_email(sender="U0NOBODY", reply_ref={})
    assert unknown.value.permanent and unknown.value.code == "user_not_found"
    sim.inject(outage="503")
    with pytest.raises(VendorUnavailable):
        adapter(sim).user_email(sender="U0SIMUSER1", reply_ref={})
    assert adapter(sim).user_email(sender="not a user id", reply_ref={}) == ""
