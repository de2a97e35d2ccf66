"""Twilio SMS adapter against its simulator: X-Twilio-Signature over the exact URL, form payloads and
status callbacks, segment arithmetic, REST send errors, secrets, and the `twilio` library unchanged."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited, VendorUnavailable
from connectors.http import make_session
from connectors.messaging import MAX_WEBHOOK_BYTES, PayloadInvalid, SignatureInvalid
from connectors.simulators import SIMULATORS, simulator_class, start_all, stop_all
from connectors.testing import assert_no_secrets, simulator_session
from connectors.twilio.channel import GuardedTwilioHttp, TwilioSmsAdapter, sms_segments
from connectors.twilio.simulator import TwilioSimulator, twilio_signature
from tests.fakes.webhook_receiver import BotEndpoint

USER = "+4915112345678"
HOOK = "https://hub.example.com/hooks/sms/0c1f"


@pytest.fixture(scope="module")
def tw_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwilioSimulator]:
    sim = TwilioSimulator(state_dir=tmp_path_factory.mktemp("twilio-sim")).start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(tw_sim: TwilioSimulator) -> Iterator[TwilioSimulator]:
    tw_sim.clear_faults()
    tw_sim.reset()
    tw_sim.register_webhook(None)
    tw_sim.auto_status = True
    yield tw_sim
    tw_sim.clear_faults()


def config(sim: TwilioSimulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    return {**{k: d[k] for k in ("account_sid", "auth_token", "from_number", "api_base")}, **overrides}


def adapter(sim: TwilioSimulator, **overrides: Any) -> TwilioSmsAdapter:
    return TwilioSmsAdapter(config=config(sim, **overrides), session=simulator_session(sim))


def signed(sim: TwilioSimulator, params: dict[str, str], url: str = HOOK) -> tuple[bytes, dict[str, str]]:
    return urlencode(params).encode(), {"X-Twilio-Signature": twilio_signature(sim.auth_token, url, params)}


def secrets_of(sim: TwilioSimulator) -> dict[str, str]:
    return {"auth_token": sim.auth_token}


REPLY = {"to": USER, "from": TwilioSimulator.from_number}


# --- verify ------------------------------------------------------------------------------------------


def test_signature_of_a_delivered_sms_is_accepted(sim: TwilioSimulator) -> None:
    """Twilio signs the URL it called; the bot verifies with the URL it was called at: the same string."""
    with BotEndpoint(adapter(sim)) as bot:
        delivery = sim.deliver_message(bot.url, USER, "Wo ist meine Bestellung 4711?")
        assert (delivery.status, bot.refused) == (200, [])
        (message,) = bot.events[0].messages
    assert message.text == "Wo ist meine Bestellung 4711?"
    assert delivery.response == b'<?xml version="1.0" encoding="UTF-8"?><Response />'


def test_the_simulators_signature_is_the_one_the_twilio_library_computes(sim: TwilioSimulator) -> None:
    params = sim.message_params(USER, "Grüße & Ü+")
    _, headers = signed(sim, params)
    assert RequestValidator(sim.auth_token).compute_signature(HOOK, params) == headers["X-Twilio-Signature"]


@pytest.mark.parametrize(
    "called",
    [
        "http://hub.example.com/hooks/sms/0c1f",  # TLS terminated at a proxy: scheme differs
        "https://internal-lb:8443/hooks/sms/0c1f",  # the host behind the proxy
        "https://hub.example.com/hooks/sms/0c1f/",
        "https://hub.example.com/hooks/sms/0c1f?x=1",
        "https://hub.example.com/hooks/sms/other",
    ],
)
def test_signature_is_bound_to_the_exact_url(sim: TwilioSimulator, called: str) -> None:
    body, headers = signed(sim, sim.message_params(USER, "hi"))
    with pytest.raises(SignatureInvalid, match="mismatch"):
        adapter(sim).verify(url=called, headers=headers, body=body, now=time.time())


def test_default_port_spelled_out_still_verifies(sim: TwilioSimulator) -> None:
    """Twilio signs with and without :443 inconsistently; RequestValidator accepts both."""
    body, headers = signed(sim, sim.message_params(USER, "hi"))
    adapter(sim).verify(url="https://hub.example.com:443/hooks/sms/0c1f", headers=headers, body=body, now=0)


def test_wrong_auth_token_is_refused(sim: TwilioSimulator) -> None:
    body, headers = signed(sim, sim.message_params(USER, "hi"))
    with pytest.raises(SignatureInvalid) as caught:
        adapter(sim, auth_token="0" * 32).verify(url=HOOK, headers=headers, body=body, now=time.time())
    assert caught.value.reason == "mismatch"
    assert_no_secrets(caught.value, {**secrets_of(sim), "other": "0" * 32})


def test_one_tampered_byte_is_refused(sim: TwilioSimulator) -> None:
    body, headers = signed(sim, sim.message_params(USER, "Bestellung 4711"))
    tampered = body.replace(b"4711", b"4712")
    assert len(tampered) == len(body) and tampered != body
    with pytest.raises(SignatureInvalid):
        adapter(sim).verify(url=HOOK, headers=headers, body=tampered, now=time.time())


def test_an_added_field_is_refused(sim: TwilioSimulator) -> None:
    body, headers = signed(sim, sim.message_params(USER, "hi"))
    with pytest.raises(SignatureInvalid):
        adapter(sim).verify(url=HOOK, headers=headers, body=body + b"&Admin=true", now=time.time())


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Twilio-Signature": ""}, "missing"),
        ({"X-Twilio-Signature": "bm9wZQ=="}, "mismatch"),
    ],
)
def test_missing_or_wrong_signature_is_refused(
    sim: TwilioSimulator, headers: dict[str, str], reason: str
) -> None:
    body, _ = signed(sim, sim.message_params(USER, "hi"))
    with pytest.raises(SignatureInvalid) as caught:
        adapter(sim).verify(url=HOOK, headers=headers, body=body, now=time.time())
    assert caught.value.reason == reason


def test_lower_case_header_and_non_form_body(sim: TwilioSimulator) -> None:
    body, headers = signed(sim, sim.message_params(USER, "hi"))
    adapter(sim).verify(
        url=HOOK, headers={"x-twilio-signature": headers["X-Twilio-Signature"]}, body=body, now=0
    )
    with pytest.raises(SignatureInvalid):
        adapter(sim).verify(url=HOOK, headers=headers, body=b"\xff\xfe", now=0)


def test_no_timestamp_so_a_replay_carries_the_same_message_sid(sim: TwilioSimulator) -> None:
    """Twilio signs no timestamp: a retried request is identical, and MessageSid is the de-dup key."""
    with BotEndpoint(adapter(sim)) as bot:
        first = sim.deliver_message(bot.url, USER, "hi")
        sim.replay(first)
        events = bot.wait_events(2)
    sids = [e.messages[0].platform_message_id for e in events]
    assert sids[0] == sids[1] and sids[0].startswith("SM") and len(sids[0]) == 34


# --- parse -------------------------------------------------------------------------------------------


def test_incoming_sms_becomes_an_inbound_turn(sim: TwilioSimulator) -> None:
    params = sim.message_params(USER, "Status von Auftrag 4711?", message_sid="SM" + "a" * 32)
    body, headers = signed(sim, params)
    events = adapter(sim).parse(headers=headers, body=body)
    (message,) = events.messages
    assert message.platform_message_id == "SM" + "a" * 32
    assert message.sender == message.conversation_key == USER
    assert message.sender_verified is True
    assert dict(message.reply_ref) == {"to": USER, "from": sim.from_number}
    assert events.answer is not None
    assert events.answer.content_type.startswith("text/xml")
    assert events.answer.body.endswith(b"<Response />")


def test_status_callbacks_become_status_updates(sim: TwilioSimulator) -> None:
    wa = adapter(sim)
    for status, code, expected in [("delivered", None, ""), ("undelivered", 30003, "30003")]:
        sid = "SM" + "b" * 32
        params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                  "AccountSid": sim.account_sid, "To": USER, "From": sim.from_number}  # fmt: skip
        if code:
            params["ErrorCode"] = str(code)
        events = wa.parse(headers={}, body=urlencode(params).encode())
        assert events.messages == ()
        assert [(s.platform_message_id, s.status, s.error) for s in events.statuses] == [
            ("SM" + "b" * 32, status, expected)
        ]
        assert events.answer is not None and events.answer.status == 200


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"media": 1}, "unsupported:media"),
        ({"media": 2}, "unsupported:media"),
        ({"opt_out": "STOP"}, "opt_out:stop"),
    ],
)
def test_media_and_opt_outs_are_ignored(sim: TwilioSimulator, options: dict[str, Any], reason: str) -> None:
    body, _ = signed(sim, sim.message_params(USER, "look", **options))
    events = adapter(sim).parse(headers={}, body=body)
    assert (events.messages, events.ignored) == ((), (reason,))
    assert events.answer is not None  # Twilio still gets its empty TwiML


@pytest.mark.parametrize(
    ("sender", "text", "reason"),
    [
        ("whatsapp:+4915112345678", "hi", "unsupported:sender:whatsapp"),
        ("ACME", "hi", "unsupported:sender:alphanumeric"),
        (TwilioSimulator.from_number, "hi", "echo"),
        (USER, "   ", "empty"),
    ],
)
def test_other_senders_echoes_and_empty_bodies_are_ignored(
    sim: TwilioSimulator, sender: str, text: str, reason: str
) -> None:
    body, _ = signed(sim, sim.message_params(sender, text))
    events = adapter(sim).parse(headers={}, body=body)
    assert (events.messages, events.ignored) == ((), (reason,))


def test_unknown_event_is_ignored(sim: TwilioSimulator) -> None:
    body = urlencode({"MessageSid": "SM" + "c" * 32, "SmsStatus": "teleported"}).encode()
    assert adapter(sim).parse(headers={}, body=body).ignored == ("unknown_event:teleported",)


def test_oversized_body_is_refused_before_parsing(sim: TwilioSimulator) -> None:
    with pytest.raises(PayloadInvalid, match="exceeds"):
        adapter(sim).parse(headers={}, body=b"Body=" + b"a" * MAX_WEBHOOK_BYTES)


@pytest.mark.parametrize("body", [b"\xff\xfe\x00", b"Body=hi&From=%2B49", b"{}", b"&&&", b""])
def test_malformed_or_foreign_forms_are_payload_invalid(sim: TwilioSimulator, body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        adapter(sim).parse(headers={}, body=body)


# --- segments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets: 160
        ("€" * 81, 2),
        ("[" * 153, 3),  # 306 septets, yet 76 pairs fill a 153-septet part: 76 + 76 + 1
        ("a" * 152 + "€" + "a" * 152, 3),  # the escape pair cannot straddle two parts
        ("Grüße aus München, Ihre Bestellung ÄÖÜ ist unterwegs. ¿Ñ?", 1),  # all GSM-7
        ("ç", 1),  # not GSM-7 (only Ç is): UCS-2
        ("Привет" * 11 + "abcd", 1),  # 70 UCS-2 units
        ("Привет" * 11 + "abcde", 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("😀" * 35, 1),  # astral characters are two UTF-16 units
        ("😀" * 36, 2),
        ("ご注文は発送されました", 1),
    ],
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


# --- send --------------------------------------------------------------------------------------------


def test_send_delivers_exactly_the_message(sim: TwilioSimulator) -> None:
    text = "Ihre Bestellung 4711 ist unterwegs. " * 6  # 216 GSM-7 characters: two segments
    sent = adapter(sim).send(reply_ref=REPLY, text=text)
    (recorded,) = sim.sent()
    assert recorded["sid"] == sent.platform_message_id
    assert (recorded["to"], recorded["from"], recorded["body"]) == (USER, sim.from_number, text)
    assert sent.segments == recorded["num_segments"] == 2
    assert recorded["status_callback"] is None


def test_send_through_a_messaging_service(sim: TwilioSimulator) -> None:
    wa = adapter(sim, from_number=None, messaging_service_sid=sim.messaging_service_sid)
    wa.send(reply_ref={"to": USER}, text="hi")
    (recorded,) = sim.sent()
    assert recorded["messaging_service_sid"] == sim.messaging_service_sid


def test_a_round_trip_with_signed_status_callbacks(sim: TwilioSimulator) -> None:
    """User texts → adapter parses → adapter replies by REST → Twilio calls the StatusCallback URL,
    signed over that URL, and the adapter reads sent/delivered."""
    with BotEndpoint(adapter(sim)) as bot:
        wa = adapter(sim, status_callback_url=bot.url)
        sim.register_webhook(bot.url)
        sim.deliver_message(text="Hallo")
        inbound = bot.events[0].messages[0]
        sent = wa.send(reply_ref=inbound.reply_ref, text="Hallo! Wie kann ich helfen?")
        events = bot.wait_events(3)
        assert bot.refused == []
    assert [(s.platform_message_id, s.status) for e in events for s in e.statuses] == [
        (sent.platform_message_id, "sent"),
        (sent.platform_message_id, "delivered"),
    ]


def test_rate_limit_is_rate_limited_with_retry_after(sim: TwilioSimulator) -> None:
    sim.inject(rate_limit={"count": 1, "retry_after": 7})
    with pytest.raises(RateLimited) as caught:
        adapter(sim).send(reply_ref=REPLY, text="hi")
    assert (caught.value.retry_after, caught.value.code, caught.value.permanent) == (7.0, "20429", False)
    assert adapter(sim).send(reply_ref=REPLY, text="hi").platform_message_id


def test_wrong_or_revoked_token_is_auth_failed(sim: TwilioSimulator) -> None:
    with pytest.raises(AuthFailed) as caught:
        adapter(sim, auth_token="f" * 32).send(reply_ref=REPLY, text="hi")
    assert (caught.value.code, caught.value.permanent) == ("20003", True)
    assert_no_secrets(caught.value, {**secrets_of(sim), "wrong": "f" * 32})
    sim.inject(expire_tokens=True)
    with pytest.raises(AuthFailed):
        adapter(sim).send(reply_ref=REPLY, text="hi")
    with pytest.raises(AuthFailed):
        adapter(sim).test()


@pytest.mark.parametrize(
    ("to", "code"),
    [("12345", "invalid_recipient"), ("+15005550009", "invalid_recipient"), ("+15005550010", "opted_out")],
)
def test_unusable_recipients_are_permanent(sim: TwilioSimulator, to: str, code: str) -> None:
    with pytest.raises(ConnectorError) as caught:
        adapter(sim).send(reply_ref={"to": to}, text="hi")
    assert (caught.value.code, caught.value.permanent) == (code, True)
    assert sim.sent() == []


@pytest.mark.parametrize(
    "fault",
    [{"outage": "503"}, {"outage": "reset"}, {"errors": [{"status": 500}]}, {"errors": [{"status": 503}]}],
)
def test_outages_are_transient(sim: TwilioSimulator, fault: dict[str, Any]) -> None:
    sim.inject(**fault)
    with pytest.raises(VendorUnavailable) as caught:
        adapter(sim).send(reply_ref=REPLY, text="hi")
    assert caught.value.permanent is False
    assert_no_secrets(caught.value, secrets_of(sim))
    assert sim.sent() == []


def test_timeout_is_transient(sim: TwilioSimulator) -> None:
    sim.inject(latency_ms=1500)
    session = make_session(
        allow_hosts=["127.0.0.1"], ca_bundle=sim.ca_bundle, timeout=(1.0, 0.3), max_retries=0
    )
    with pytest.raises(VendorUnavailable, match="Timed out"):
        TwilioSmsAdapter(config=config(sim), session=session).send(reply_ref=REPLY, text="hi")


def test_malformed_success_answers(sim: TwilioSimulator) -> None:
    sim.inject(malformed={"kind": "garbage"})  # a proxy page echoing the Basic credentials
    with pytest.raises(VendorUnavailable) as caught:
        adapter(sim).send(reply_ref=REPLY, text="hi")
    assert_no_secrets(caught.value, secrets_of(sim))
    sim.inject(malformed={"kind": "missing"})
    with pytest.raises(ConnectorError) as unexpected:
        adapter(sim).send(reply_ref=REPLY, text="hi")
    assert unexpected.value.permanent is True


def test_too_long_is_refused_before_the_call(sim: TwilioSimulator) -> None:
    with pytest.raises(ConnectorError) as caught:
        adapter(sim).send(reply_ref=REPLY, text="x" * 1601)
    assert caught.value.code == "too_long"
    assert sim.sent() == []
    assert adapter(sim).send(reply_ref=REPLY, text="x" * 1600).segments == 11


def test_no_secret_reaches_a_log_line(sim: TwilioSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wa = adapter(sim)
    wa.send(reply_ref=REPLY, text="hi")
    wa.test()
    for fault in ({"outage": "503"}, {"rate_limit": {"count": 1}}, {"malformed": {"kind": "garbage"}}):
        sim.clear_faults()
        sim.inject(**fault)
        with pytest.raises(ConnectorError):
            wa.send(reply_ref=REPLY, text="hi")
    with pytest.raises(AuthFailed):
        adapter(sim, auth_token="f" * 32).send(reply_ref=REPLY, text="hi")
    assert caplog.records
    assert sim.auth_token not in caplog.text


# --- test(), config, transport ------------------------------------------------------------------------


def test_test_call(sim: TwilioSimulator) -> None:
    adapter(sim).test()
    with pytest.raises(AuthFailed):
        adapter(sim, account_sid="AC" + "0" * 32).test()


def test_config_is_checked_at_construction() -> None:
    base = {"account_sid": "AC" + "1" * 32, "auth_token": "t" * 32}
    with pytest.raises(InvalidConfig, match="from number or a messaging service"):
        TwilioSmsAdapter(config=base)
    with pytest.raises(InvalidConfig, match="auth_token"):
        TwilioSmsAdapter(config={"account_sid": "AC" + "1" * 32, "from_number": USER})
    with pytest.raises(InvalidConfig, match="unknown"):
        TwilioSmsAdapter(config={**base, "from_number": USER, "region": "ie1"})
    assert {f.name for f in TwilioSmsAdapter.config_fields if f.secret} == {"auth_token"}


def test_outbound_guard_applies(sim: TwilioSimulator) -> None:
    """The Twilio client's transport is our HttpSession: a loopback API base that is not allow-listed is
    refused before any request leaves."""
    wa = TwilioSmsAdapter(config=config(sim), session=make_session(ca_bundle=sim.ca_bundle))
    with pytest.raises(ConnectorError, match="not allow-listed"):
        wa.send(reply_ref=REPLY, text="hi")
    assert sim.sent() == []


def test_environment_edge_does_not_redirect_the_client(
    sim: TwilioSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    adapter(sim).send(reply_ref=REPLY, text="hi")
    assert len(sim.sent()) == 1


# --- the twilio library, unchanged ---------------------------------------------------------------------


def test_twilio_client_works_unchanged_against_the_simulator(sim: TwilioSimulator) -> None:
    """The stock client and its own HTTP client, pointed at the simulator the way RapidPro does it."""
    client = Client(sim.account_sid, sim.auth_token)
    client.http_client.session.verify = sim.ca_bundle
    client.http_client.session.trust_env = False
    client.api.base_url = sim.base_url
    message = client.messages.create(to=USER, from_=sim.from_number, body="Grüße")
    assert message.sid.startswith("SM") and message.num_segments == "1" and message.status == "queued"
    fetched = client.messages(message.sid).fetch()
    assert (fetched.body, fetched.to) == ("Grüße", USER)
    assert client.api.v2010.accounts(sim.account_sid).fetch().status == "active"


def test_twilio_client_over_the_guarded_transport(sim: TwilioSimulator) -> None:
    transport = GuardedTwilioHttp(simulator_session(sim), api_base=sim.base_url)
    client = Client(sim.account_sid, sim.auth_token, http_client=transport)
    message = client.messages.create(to=USER, messaging_service_sid=sim.messaging_service_sid, body="hi")
    assert message.status == "accepted"
    assert [m["sid"] for m in sim.sent()] == [message.sid]


# --- simulator admin and registry --------------------------------------------------------------------


def test_admin_endpoints_deliver_and_list(sim: TwilioSimulator) -> None:
    session = simulator_session(sim)
    with BotEndpoint(adapter(sim)) as bot:
        session.post(f"{sim.base_url}/__admin/webhook", json={"url": bot.url})
        answer = session.post(f"{sim.base_url}/__admin/deliver", json={"from": USER, "text": "via admin"})
        assert answer.json()["status"] == 200
        assert bot.events[-1].messages[0].text == "via admin"
    adapter(sim).send(reply_ref=REPLY, text="reply")
    assert [m["body"] for m in session.get(f"{sim.base_url}/__admin/sent").json()["sent"]] == ["reply"]


def test_registered_for_make_run(tmp_path: Path) -> None:
    assert "twilio" in SIMULATORS and simulator_class("twilio") is TwilioSimulator
    try:
        described = start_all(tmp_path, vendors=["twilio"])["twilio"]
    finally:
        stop_all(tmp_path)
    assert described["base_url"].startswith("https://127.0.0.1:")
    assert {"account_sid", "auth_token", "from_number", "messaging_service_sid", "api_base"} <= set(described)
