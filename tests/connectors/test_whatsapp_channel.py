"""WhatsApp Cloud API adapter against its simulator: every seam attacked (signature, handshake, payloads,
send errors, secrets), the 24-hour window both ways, and simulator → adapter → simulator round trips."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import (
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import make_session
from connectors.messaging import MAX_WEBHOOK_BYTES, PayloadInvalid, SignatureInvalid
from connectors.simulators import SIMULATORS, simulator_class, start_all, stop_all
from connectors.testing import assert_no_secrets, simulator_session
from connectors.whatsapp.channel import WhatsAppAdapter
from connectors.whatsapp.simulator import WhatsAppSimulator, meta_json
from tests.fakes.webhook_receiver import BotEndpoint

USER = "4915112345678"


@pytest.fixture(scope="module")
def wa_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhatsAppSimulator]:
    sim = WhatsAppSimulator(state_dir=tmp_path_factory.mktemp("wa-sim")).start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(wa_sim: WhatsAppSimulator) -> Iterator[WhatsAppSimulator]:
    """The shared simulator, clean: no faults, nothing sent, no webhook, every window closed."""
    wa_sim.clear_faults()
    wa_sim.reset()
    wa_sim.register_webhook(None)
    wa_sim._last_inbound.clear()
    wa_sim.enforce_window, wa_sim.window_failure, wa_sim.auto_status = True, "webhook", True
    yield wa_sim
    wa_sim.clear_faults()


def config(sim: WhatsAppSimulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    keys = ("app_secret", "verify_token", "access_token", "phone_number_id", "api_base")
    return {**{k: d[k] for k in keys}, **overrides}


def adapter(sim: WhatsAppSimulator, **overrides: Any) -> WhatsAppAdapter:
    return WhatsAppAdapter(config=config(sim, **overrides), session=simulator_session(sim))


def secrets_of(sim: WhatsAppSimulator) -> dict[str, str]:
    return {"access_token": sim.access_token, "app_secret": sim.app_secret, "verify_token": sim.verify_token}


def signed(sim: WhatsAppSimulator, payload: Any) -> tuple[bytes, dict[str, str]]:
    body = meta_json(payload)
    return body, sim.sign(body)


REPLY = {"phone_number_id": WhatsAppSimulator.phone_number_id, "to": USER}


# --- verify ------------------------------------------------------------------------------------------


def test_signature_of_a_delivered_message_is_accepted(sim: WhatsAppSimulator) -> None:
    """The bytes exactly as Meta's POST carried them (through a real HTTP hop) verify and parse."""
    with BotEndpoint(adapter(sim)) as bot:
        delivery = sim.deliver_message(bot.url, f"+{USER}", "Wo ist meine Bestellung? Grüße/€")
        assert delivery.status == 200
        assert bot.refused == []
        (message,) = bot.events[0].messages
    assert message.text == "Wo ist meine Bestellung? Grüße/€"
    assert delivery.headers["X-Hub-Signature-256"].startswith("sha256=")


def test_header_name_is_case_insensitive(sim: WhatsAppSimulator) -> None:
    body, headers = signed(sim, sim.message_payload(USER, "hi"))
    lowered = {k.lower(): v for k, v in headers.items()}
    adapter(sim).verify(url="", headers=lowered, body=body, now=time.time())


def test_wrong_app_secret_is_refused(sim: WhatsAppSimulator) -> None:
    body, headers = signed(sim, sim.message_payload(USER, "hi"))
    with pytest.raises(SignatureInvalid) as caught:
        adapter(sim, app_secret="another-apps-secret").verify(
            url="", headers=headers, body=body, now=time.time()
        )
    assert caught.value.reason == "mismatch"
    assert_no_secrets(caught.value, secrets_of(sim))


@pytest.mark.parametrize("position", [0, 40, -2])
def test_one_tampered_byte_is_refused(sim: WhatsAppSimulator, position: int) -> None:
    body, headers = signed(sim, sim.message_payload(USER, "Bestellung 12345"))
    tampered = bytearray(body)
    tampered[position] ^= 0x01
    with pytest.raises(SignatureInvalid, match="mismatch"):
        adapter(sim).verify(url="", headers=headers, body=bytes(tampered), now=time.time())


def test_reserialised_json_does_not_verify(sim: WhatsAppSimulator) -> None:
    """Meta escapes non-ASCII and "/": only the raw body verifies, never json.dumps(json.loads(body))."""
    body, headers = signed(sim, sim.message_payload(USER, "Grüße/€"))
    again = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    assert again != body
    with pytest.raises(SignatureInvalid):
        adapter(sim).verify(url="", headers=headers, body=again, now=time.time())


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Hub-Signature-256": ""}, "missing"),
        ({"X-Hub-Signature": "sha1=00"}, "missing"),  # the legacy SHA-1 header alone is not enough
        ({"X-Hub-Signature-256": "md5=abc"}, "mismatch"),
        ({"X-Hub-Signature-256": "sha256="}, "mismatch"),
        ({"X-Hub-Signature-256": "sha256=zz-not-hex-ü"}, "mismatch"),
    ],
)
def test_missing_or_malformed_signature_is_refused(
    sim: WhatsAppSimulator, headers: dict[str, str], reason: str
) -> None:
    body = meta_json(sim.message_payload(USER, "hi"))
    with pytest.raises(SignatureInvalid) as caught:
        adapter(sim).verify(url="", headers=headers, body=body, now=time.time())
    assert caught.value.reason == reason


def test_no_timestamp_so_a_replay_carries_the_same_wamid(sim: WhatsAppSimulator) -> None:
    """Meta signs no timestamp (nothing to be stale): a retried delivery is byte-identical and the
    Django side drops it by platform_message_id, which must therefore be the wamid."""
    with BotEndpoint(adapter(sim)) as bot:
        first = sim.deliver_message(bot.url, USER, "hi")
        sim.replay(first)
        events = bot.wait_events(2)
    ids = [e.messages[0].platform_message_id for e in events]
    assert ids[0] == ids[1] == json.loads(first.body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert ids[0].startswith("wamid.")


# --- handshake ---------------------------------------------------------------------------------------


def test_handshake_answers_the_challenge_as_plain_text(sim: WhatsAppSimulator) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": sim.verify_token, "hub.challenge": "1158201444"}
    answer = adapter(sim).handshake(method="GET", query=query, headers={})
    assert answer is not None
    assert (answer.status, answer.body) == (200, b"1158201444")
    assert answer.content_type.startswith("text/plain")


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": WhatsAppSimulator.verify_token, "hub.challenge": "1"},
        {"hub.verify_token": WhatsAppSimulator.verify_token, "hub.challenge": "1"},
        {},
    ],
)
def test_handshake_with_a_wrong_token_or_mode_is_403(sim: WhatsAppSimulator, query: dict[str, str]) -> None:
    answer = adapter(sim).handshake(method="GET", query=query, headers={})
    assert answer is not None
    assert answer.status == 403
    assert b"1" not in answer.body


def test_handshake_refuses_an_unprintable_challenge(sim: WhatsAppSimulator) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": sim.verify_token, "hub.challenge": "<x>\n"}
    answer = adapter(sim).handshake(method="GET", query=query, headers={})
    assert answer is not None and answer.status == 400


def test_post_is_not_a_handshake(sim: WhatsAppSimulator) -> None:
    assert adapter(sim).handshake(method="POST", query={}, headers={}) is None


def test_simulator_subscribes_only_with_the_right_verify_token(sim: WhatsAppSimulator) -> None:
    with BotEndpoint(adapter(sim)) as bot:
        assert sim.subscribe(bot.url, verify_token="not-the-token") is False
        assert sim.webhook_url is None
        assert sim.subscribe(bot.url) is True
        assert sim.webhook_url == bot.url


# --- parse -------------------------------------------------------------------------------------------


def test_text_message_becomes_an_inbound_turn(sim: WhatsAppSimulator) -> None:
    payload = sim.message_payload(
        USER, "Status von Auftrag 4711?", message_id="wamid.ABC", timestamp=1_749_416_383
    )
    body, headers = signed(sim, payload)
    events = adapter(sim).parse(headers=headers, body=body)
    (message,) = events.messages
    assert message.platform_message_id == "wamid.ABC"
    assert message.sender == message.conversation_key == f"+{USER}"
    assert message.sender_verified is True
    assert message.text == "Status von Auftrag 4711?"
    assert message.sent_at == datetime.fromtimestamp(1_749_416_383, UTC)
    assert dict(message.reply_ref) == {"phone_number_id": sim.phone_number_id, "to": USER}
    assert events.statuses == () and events.ignored == () and events.answer is None


def test_statuses_become_status_updates(sim: WhatsAppSimulator) -> None:
    value = {"statuses": [
        {"id": "wamid.1", "status": "delivered", "timestamp": "1", "recipient_id": USER},
        {"id": "wamid.2", "status": "failed", "timestamp": "1", "recipient_id": USER,
         "errors": [sim.window_error()]},
        {"id": "wamid.3", "status": "failed", "timestamp": "1", "recipient_id": USER,
         "errors": [{"code": 131026, "title": "Message undeliverable"}]},
        {"id": "wamid.4", "status": "teleported", "timestamp": "1", "recipient_id": USER},
    ]}  # fmt: skip
    body, headers = signed(sim, sim.envelope(value))
    events = adapter(sim).parse(headers=headers, body=body)
    assert [(s.platform_message_id, s.status, s.error) for s in events.statuses] == [
        ("wamid.1", "delivered", ""),
        ("wamid.2", "failed", "window_closed"),
        ("wamid.3", "failed", "131026: Message undeliverable"),
    ]
    assert events.ignored == ("unknown_status:teleported",)


@pytest.mark.parametrize("kind", ["image", "audio", "video", "document", "sticker", "location"])
def test_media_messages_are_ignored_with_a_reason(sim: WhatsAppSimulator, kind: str) -> None:
    body, headers = signed(sim, sim.message_payload(USER, "caption", kind=kind))
    events = adapter(sim).parse(headers=headers, body=body)
    assert events.messages == ()
    assert events.ignored == (f"unsupported:{kind}",)


def test_unknown_fields_and_objects_are_ignored(sim: WhatsAppSimulator) -> None:
    body, headers = signed(sim, sim.envelope({"event": "x"}, field="account_update"))
    assert adapter(sim).parse(headers=headers, body=body).ignored == ("unknown_event:account_update",)
    body, headers = signed(sim, {"object": "page", "entry": []})
    assert adapter(sim).parse(headers=headers, body=body).ignored == ("unknown_event:page",)


def test_the_businesss_own_echoes_are_ignored(sim: WhatsAppSimulator) -> None:
    echo = sim.envelope({"message_echoes": [{"from": sim.display_phone_number, "to": USER, "id": "wamid.E",
                                             "timestamp": "1", "type": "text", "text": {"body": "hi"}}]},
                        field="smb_message_echoes")  # fmt: skip
    body, headers = signed(sim, echo)
    assert adapter(sim).parse(headers=headers, body=body).ignored == ("echo",)
    own = sim.message_payload(sim.display_phone_number, "from ourselves")
    body, headers = signed(sim, own)
    events = adapter(sim).parse(headers=headers, body=body)
    assert events.messages == () and events.ignored == ("echo",)


def test_events_for_another_phone_number_of_the_app_are_ignored(sim: WhatsAppSimulator) -> None:
    body, headers = signed(sim, sim.message_payload(USER, "hi"))
    events = adapter(sim, phone_number_id="999999999999999").parse(headers=headers, body=body)
    assert events.messages == () and events.ignored == ("other_phone_number",)


def test_oversized_body_is_refused_before_parsing() -> None:
    wa = WhatsAppAdapter(config={"app_secret": "s", "verify_token": "v", "access_token": "t",
                                 "phone_number_id": "1"})  # fmt: skip
    huge = b"{" + b" " * MAX_WEBHOOK_BYTES + b"}"  # valid JSON: only the size check can refuse it
    with pytest.raises(PayloadInvalid, match="exceeds"):
        wa.parse(headers={}, body=huge)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'{"object": "whatsapp_business_account"}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": '
        b'{"metadata": {"phone_number_id": "106540352242922"}, "messages": [{"type": "text"}]}}]}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": '
        b'{"metadata": {"phone_number_id": "106540352242922"}, "messages": [{"type": "text", "id": "w", '
        b'"from": "+49 <script>", "timestamp": "1", "text": {"body": "x"}}]}}]}]}',
    ],
)
def test_malformed_payloads_are_payload_invalid(sim: WhatsAppSimulator, body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        adapter(sim).parse(headers={}, body=body)


# --- send --------------------------------------------------------------------------------------------


def test_send_delivers_exactly_the_message(sim: WhatsAppSimulator) -> None:
    sim.open_window(USER)
    sent = adapter(sim).send(reply_ref=REPLY, text="Ihre Bestellung 4711 ist unterwegs.")
    (recorded,) = sim.sent()
    assert recorded["id"] == sent.platform_message_id and sent.segments == 1
    assert (recorded["to"], recorded["type"], recorded["text"]) == (
        USER,
        "text",
        "Ihre Bestellung 4711 ist unterwegs.",
    )
    assert recorded["phone_number_id"] == sim.phone_number_id
    assert recorded["payload"]["messaging_product"] == "whatsapp"


def test_a_round_trip_reports_sent_and_delivered(sim: WhatsAppSimulator) -> None:
    """User writes → adapter parses → adapter replies → Meta reports the reply's statuses."""
    wa = adapter(sim)
    with BotEndpoint(wa) as bot:
        assert sim.subscribe(bot.url)
        sim.deliver_message(text="Hallo")
        inbound = bot.events[0].messages[0]
        sent = wa.send(reply_ref=inbound.reply_ref, text="Hallo! Wie kann ich helfen?")
        events = bot.wait_events(3)
    statuses = [s for e in events for s in e.statuses]
    assert [(s.platform_message_id, s.status) for s in statuses] == [
        (sent.platform_message_id, "sent"),
        (sent.platform_message_id, "delivered"),
    ]


def test_window_closed_reported_by_webhook(sim: WhatsAppSimulator) -> None:
    """What Meta usually does: accept the text, then report it failed with 131047."""
    wa = adapter(sim)
    with BotEndpoint(wa) as bot:
        sim.register_webhook(bot.url)
        sent = wa.send(reply_ref=REPLY, text="Ein Agent hat geantwortet.")
        (event,) = bot.wait_events(1)
    assert event.statuses[0].platform_message_id == sent.platform_message_id
    assert (event.statuses[0].status, event.statuses[0].error) == ("failed", "window_closed")


def test_window_closed_refused_synchronously(sim: WhatsAppSimulator) -> None:
    sim.window_failure = "sync"
    with pytest.raises(ConnectorError) as caught:
        adapter(sim).send(reply_ref=REPLY, text="late agent reply")
    assert caught.value.code == "window_closed"
    assert caught.value.permanent is True
    assert sim.sent() == []


def test_template_goes_through_a_closed_window(sim: WhatsAppSimulator) -> None:
    sim.window_failure = "sync"
    sent = adapter(sim).send_template(reply_ref=REPLY, template_name="agent_reply", language="de",
                                      params=["Ihr Ticket ist gelöst."])  # fmt: skip
    (recorded,) = sim.sent()
    assert recorded["id"] == sent.platform_message_id
    assert recorded["template"] == "agent_reply"
    body = recorded["payload"]["template"]["components"][0]["parameters"][0]
    assert body == {"type": "text", "text": "Ihr Ticket ist gelöst."}


def test_template_errors_are_permanent(sim: WhatsAppSimulator) -> None:
    wa = adapter(sim)
    with pytest.raises(ConnectorError) as caught:
        wa.send_template(reply_ref=REPLY, template_name="agent_reply", language="de", params=[])
    assert (caught.value.code, caught.value.permanent) == ("132000", True)
    with pytest.raises(ConnectorError) as caught:
        wa.send_template(reply_ref=REPLY, template_name="no_such_template", language="de")
    assert (caught.value.code, caught.value.permanent) == ("132001", True)


@pytest.mark.parametrize(
    ("policy", "code", "scope"),
    [
        ("", "130429", "throughput"),
        ("pair", "131056", "pair"),
        ("app", "4", "app"),
        ("account", "80007", "account"),
    ],
)
def test_rate_limit_is_rate_limited_with_retry_after(
    sim: WhatsAppSimulator, policy: str, code: str, scope: str
) -> None:
    sim.open_window(USER)
    sim.inject(rate_limit={"count": 1, "retry_after": 7, "policy": policy})
    with pytest.raises(RateLimited) as caught:
        adapter(sim).send(reply_ref=REPLY, text="hi")
    assert (caught.value.retry_after, caught.value.code, caught.value.scope) == (7.0, code, scope)
    assert caught.value.permanent is False
    assert adapter(sim).send(reply_ref=REPLY, text="hi").platform_message_id  # the storm is over


def test_wrong_or_revoked_token_is_auth_failed(sim: WhatsAppSimulator) -> None:
    sim.open_window(USER)
    with pytest.raises(AuthFailed) as caught:
        adapter(sim, access_token="EAAG-wrong-token").send(reply_ref=REPLY, text="hi")
    assert caught.value.permanent is True and caught.value.code == "190"
    assert_no_secrets(caught.value, {**secrets_of(sim), "wrong": "EAAG-wrong-token"})
    sim.inject(expire_tokens=True)
    with pytest.raises(AuthFailed):
        adapter(sim).send(reply_ref=REPLY, text="hi")
    with pytest.raises(AuthFailed):
        adapter(sim).test()


@pytest.mark.parametrize(
    "fault",
    [{"outage": "503"}, {"outage": "reset"}, {"errors": [{"status": 500}]}, {"errors": [{"status": 502}]}],
)
def test_outages_are_transient(sim: WhatsAppSimulator, fault: dict[str, Any]) -> None:
    sim.open_window(USER)
    sim.inject(**fault)
    with pytest.raises(VendorUnavailable) as caught:
        adapter(sim).send(reply_ref=REPLY, text="hi")
    assert caught.value.permanent is False
    assert_no_secrets(caught.value, secrets_of(sim))
    assert sim.sent() == []


def test_timeout_is_transient(sim: WhatsAppSimulator) -> None:
    sim.open_window(USER)
    sim.inject(latency_ms=1500)
    session = make_session(
        allow_hosts=["127.0.0.1"], ca_bundle=sim.ca_bundle, timeout=(1.0, 0.3), max_retries=0
    )
    wa = WhatsAppAdapter(config=config(sim), session=session)
    with pytest.raises(VendorUnavailable, match="Timed out"):
        wa.send(reply_ref=REPLY, text="hi")


def test_malformed_success_answers(sim: WhatsAppSimulator) -> None:
    sim.open_window(USER)
    sim.inject(malformed={"kind": "garbage"})  # a proxy page echoing the request, bearer token included
    with pytest.raises(VendorUnavailable) as caught:
        adapter(sim).send(reply_ref=REPLY, text="hi")
    assert_no_secrets(caught.value, secrets_of(sim))
    sim.inject(malformed={"kind": "missing"})
    with pytest.raises(UnexpectedResponse):
        adapter(sim).send(reply_ref=REPLY, text="hi")


def test_unusable_recipient_and_text_are_refused_before_the_call(sim: WhatsAppSimulator) -> None:
    wa = adapter(sim)
    with pytest.raises(ConnectorError) as caught:
        wa.send(reply_ref={"phone_number_id": sim.phone_number_id, "to": "not a phone"}, text="hi")
    assert caught.value.code == "invalid_recipient"
    with pytest.raises(ConnectorError) as caught:
        wa.send(reply_ref=REPLY, text="x" * (WhatsAppAdapter.max_text + 1))
    assert caught.value.code == "too_long"
    assert sim.sent() == []


def test_no_secret_reaches_a_log_line(sim: WhatsAppSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim.open_window(USER)
    wa = adapter(sim)
    wa.send(reply_ref=REPLY, text="hi")
    wa.test()
    for fault in ({"outage": "503"}, {"rate_limit": {"count": 1}}, {"malformed": {"kind": "garbage"}}):
        sim.clear_faults()
        sim.inject(**fault)
        with pytest.raises(ConnectorError):
            wa.send(reply_ref=REPLY, text="hi")
    assert caplog.records
    for value in secrets_of(sim).values():
        assert value not in caplog.text


# --- test() and config -------------------------------------------------------------------------------


def test_test_call(sim: WhatsAppSimulator) -> None:
    adapter(sim).test()
    with pytest.raises(ConnectorError) as caught:
        adapter(sim, phone_number_id="123456789").test()
    assert (caught.value.code, caught.value.permanent) == ("100", True)


def test_config_is_checked_at_construction() -> None:
    with pytest.raises(InvalidConfig, match="app_secret"):
        WhatsAppAdapter(config={"verify_token": "v", "access_token": "t", "phone_number_id": "1"})
    with pytest.raises(InvalidConfig, match="unknown"):
        WhatsAppAdapter(config={"app_secret": "s", "verify_token": "v", "access_token": "t",
                                "phone_number_id": "1", "surprise": True})  # fmt: skip
    secret = {f.name for f in WhatsAppAdapter.config_fields if f.secret}
    assert secret == {"app_secret", "verify_token", "access_token"}


def test_outbound_guard_applies(sim: WhatsAppSimulator) -> None:
    """The adapter calls through HttpSession: a loopback API base that is not allow-listed is refused."""
    wa = WhatsAppAdapter(config=config(sim), session=make_session(ca_bundle=sim.ca_bundle))
    with pytest.raises(ConnectorError, match="not allow-listed"):
        wa.test()


# --- simulator admin and registry --------------------------------------------------------------------


def test_admin_endpoints_deliver_and_list(sim: WhatsAppSimulator) -> None:
    with BotEndpoint(adapter(sim)) as bot:
        http = simulator_session(sim)
        assert http.post(f"{sim.base_url}/__admin/subscribe", json={"url": bot.url}, timeout=5).json() == {
            "subscribed": True
        }
        answer = http.post(
            f"{sim.base_url}/__admin/deliver", json={"from": USER, "text": "via admin"}, timeout=5
        )
        assert answer.json()["status"] == 200
        assert bot.events[-1].messages[0].text == "via admin"
        adapter(sim).send(reply_ref=REPLY, text="reply")  # the delivered message opened the window
        listed = http.get(f"{sim.base_url}/__admin/sent", timeout=5).json()["sent"]
    assert [m["text"] for m in listed] == ["reply"]


def test_registered_for_make_run(tmp_path: Path) -> None:
    """`make run` starts it and `simulators status --json` shows what a channel needs."""
    assert "whatsapp" in SIMULATORS and simulator_class("whatsapp") is WhatsAppSimulator
    try:
        described = start_all(tmp_path, vendors=["whatsapp"])["whatsapp"]
    finally:
        stop_all(tmp_path)
    assert described["base_url"].startswith("https://127.0.0.1:")
    assert {"app_secret", "verify_token", "access_token", "phone_number_id", "api_base"} <= set(described)
