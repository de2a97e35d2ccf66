"""Teams adapter: the Bot Connector JWT attacked claim by claim, key refresh throttled, send() against the
simulator, and the Bot Framework SDK (MSAL, ConnectorClient, its own JWT validation) unchanged against it."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited, VendorUnavailable
from connectors.messaging import MAX_WEBHOOK_BYTES, DictKeyCache, PayloadInvalid, SignatureInvalid
from connectors.simulation import SimRequest
from connectors.teams.channel import TENANT_TOKEN_URL, TOKEN_URL, TeamsAdapter
from connectors.teams.simulator import SigningKey, TeamsSimulator
from connectors.testing import closed_port, error_texts, simulator_session
from tests.connectors.channel_receiver import receiver

URL = "https://hub.example/chat/webhooks/teams/abc"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamsSimulator]:
    simulator = TeamsSimulator(state_dir=tmp_path_factory.mktemp("teams")).start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _clean(sim: TeamsSimulator) -> Iterator[None]:
    yield
    sim.clear_faults()
    sim.missing_conversations.clear()


def adapter(sim: TeamsSimulator, *, key_cache: DictKeyCache | None = None, **overrides: str) -> TeamsAdapter:
    d = sim.describe()
    config = {
        "app_id": d["app_id"],
        "app_password": d["app_password"],
        "openid_metadata_url": d["openid_metadata_url"],
        "token_url": d["token_url"],
        "allowed_service_hosts": d["allowed_service_hosts"],
        **overrides,
    }
    session = simulator_session(sim, max_retries=0)
    return TeamsAdapter(config=config, session=session, key_cache=key_cache or DictKeyCache())


def request(sim: TeamsSimulator, activity: dict[str, Any] | None = None, **claims: Any) -> tuple[dict, bytes]:
    activity = activity or sim.message_activity("Hallo")
    token = sim.token_for(activity["serviceUrl"], **claims)
    return {"Authorization": f"Bearer {token}"}, json.dumps(activity).encode()


def refused(a: TeamsAdapter, headers: dict[str, str], body: bytes, now: float | None = None) -> str:
    with pytest.raises(SignatureInvalid) as info:
        a.verify(url=URL, headers=headers, body=body, now=time.time() if now is None else now)
    return info.value.reason


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


# --- verify -----------------------------------------------------------------------------------------


def test_token_accepted_and_message_parsed(sim: TeamsSimulator) -> None:
    activity = sim.message_activity("Wo ist meine Bestellung?", locale="de-DE")
    headers, body = request(sim, activity)
    a = adapter(sim)
    a.verify(url=URL, headers=headers, body=body, now=time.time())
    (message,) = a.parse(headers=headers, body=body).messages
    assert message.platform_message_id == activity["id"]
    assert message.sender == activity["from"]["aadObjectId"]
    assert message.sender_verified is True
    assert message.conversation_key == "a:1simPersonalChat"
    assert message.locale == "de-DE"
    assert message.text == "Wo ist meine Bestellung?"
    assert message.sent_at is not None and abs(message.sent_at.timestamp() - time.time()) < 60
    assert dict(message.reply_ref) == {
        "service_url": sim.service_url,
        "conversation_id": "a:1simPersonalChat",
        "activity_id": activity["id"],
        "bot_id": sim.bot_id,
    }


def test_sender_falls_back_to_the_channel_user_id(sim: TeamsSimulator) -> None:
    headers, body = request(sim, sim.message_activity("hi", aad_object_id=None))
    (message,) = adapter(sim).parse(headers=headers, body=body).messages
    assert message.sender == "29:1simUserAlice"


@pytest.mark.parametrize("value", [None, "", "Basic dXNlcjpwdw==", "Bearer ", "Bearer"])
def test_missing_bearer_token_is_refused(sim: TeamsSimulator, value: str | None) -> None:
    _, body = request(sim)
    headers = {} if value is None else {"Authorization": value}
    assert refused(adapter(sim), headers, body) == "missing"


def test_garbage_token_is_refused(sim: TeamsSimulator) -> None:
    _, body = request(sim)
    assert refused(adapter(sim), {"Authorization": "Bearer not.a.jwt"}, body) == "malformed"


def test_token_signed_by_another_key_under_a_published_kid_is_refused(sim: TeamsSimulator) -> None:
    forger = SigningKey.generate()
    activity = sim.message_activity("hi")
    token = sim.token_for(activity["serviceUrl"], key=forger, headers={"kid": sim.keys[0].kid})
    assert (
        refused(adapter(sim), {"Authorization": f"Bearer {token}"}, json.dumps(activity).encode())
        == "mismatch"
    )


def test_token_signed_by_an_unpublished_key_is_refused(sim: TeamsSimulator) -> None:
    forger = SigningKey.generate()
    activity = sim.message_activity("hi")
    token = sim.token_for(activity["serviceUrl"], key=forger)
    assert refused(adapter(sim), {"Authorization": f"Bearer {token}"}, json.dumps(activity).encode()) == "key"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "00000000-0000-0000-0000-000000000bad"}, "audience"),
        ({"aud": None}, "malformed"),
        ({"iss": "https://sts.windows.net/evil/"}, "issuer"),
        ({"iss": None}, "malformed"),
        ({"exp": None}, "malformed"),
        ({"serviceurl": "https://smba.trafficmanager.net/emea/"}, "service_url"),
        ({"serviceurl": None}, "service_url"),
    ],
)
def test_claims_are_checked(sim: TeamsSimulator, claims: dict[str, Any], reason: str) -> None:
    headers, body = request(sim, **claims)
    assert refused(adapter(sim), headers, body) == reason


@pytest.mark.parametrize(
    ("exp", "nbf", "accepted"),
    [(-299, -3600, True), (-301, -3600, False), (3600, 299, True), (3600, 301, False)],
)
def test_exp_and_nbf_allow_five_minutes_of_skew(
    sim: TeamsSimulator, exp: int, nbf: int, accepted: bool
) -> None:
    now = int(time.time())
    headers, body = request(sim, exp=now + exp, nbf=now + nbf)
    a = adapter(sim)
    if accepted:
        a.verify(url=URL, headers=headers, body=body, now=now)
    else:
        assert refused(a, headers, body, now) == "expired"


def test_alg_none_is_refused(sim: TeamsSimulator) -> None:
    activity = sim.message_activity("hi")
    claims = {"iss": "https://api.botframework.com", "aud": sim.app_id, "exp": int(time.time()) + 600,
              "serviceurl": activity["serviceUrl"]}  # fmt: skip
    token = unsigned_token({"alg": "none", "kid": sim.keys[0].kid, "typ": "JWT"}, claims)
    assert (
        refused(adapter(sim), {"Authorization": f"Bearer {token}"}, json.dumps(activity).encode())
        == "algorithm"
    )


def test_hs256_signed_with_the_public_key_is_refused(sim: TeamsSimulator) -> None:
    """The classic confusion: HMAC keyed with the published RSA public key, which anyone can compute."""
    import hashlib
    import hmac

    activity = sim.message_activity("hi")
    claims = {"iss": "https://api.botframework.com", "aud": sim.app_id, "exp": int(time.time()) + 600,
              "serviceurl": activity["serviceUrl"]}  # fmt: skip
    public_pem = (
        sim.keys[0]
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = unsigned_token({"alg": "HS256", "kid": sim.keys[0].kid, "typ": "JWT"}, claims).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, head.encode(), hashlib.sha256).digest()
    token = f"{head}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert (
        refused(adapter(sim), {"Authorization": f"Bearer {token}"}, json.dumps(activity).encode())
        == "algorithm"
    )


@pytest.mark.parametrize(
    ("service_url", "allowed"),
    [
        ("https://evil.example/teams/", "127.0.0.1"),
        ("http://127.0.0.1/teams/", "127.0.0.1"),
        ("https://smba.trafficmanager.net.evil.example/", "smba.trafficmanager.net"),
        ("https://botframework.com.evil.example/", "*.botframework.com"),
    ],
)
def test_service_url_outside_the_allow_list_is_refused_even_when_signed(
    sim: TeamsSimulator, service_url: str, allowed: str
) -> None:
    activity = sim.message_activity("hi", serviceUrl=service_url)
    headers, body = request(sim, activity)  # the claim matches the activity: only the allow-list stops it
    assert refused(adapter(sim, allowed_service_hosts=allowed), headers, body) == "service_url"


def test_default_allow_list_accepts_the_real_service_hosts(sim: TeamsSimulator) -> None:
    a = TeamsAdapter(config={"app_id": "x", "app_password": "y"})
    assert a.service_url_allowed("https://smba.trafficmanager.net/emea/")
    assert a.service_url_allowed("https://europe.webchat.botframework.com/")
    assert not a.service_url_allowed("https://botframework.com.attacker.example/")
    assert not a.service_url_allowed("https://127.0.0.1/")


def test_key_not_endorsed_for_the_channel_is_refused(sim: TeamsSimulator) -> None:
    headers, body = request(sim, sim.message_activity("hi", channel_id="slack"))
    assert refused(adapter(sim), headers, body) == "endorsement"


def test_unknown_kid_refreshes_the_keys_at_most_once_a_minute(sim: TeamsSimulator) -> None:
    cache = DictKeyCache()
    a = adapter(sim, key_cache=cache)
    now = time.time()
    headers, body = request(sim)
    a.verify(url=URL, headers=headers, body=body, now=now)  # first use: one fetch
    fetched = sim.metadata_requests
    activity = sim.message_activity("hi")
    forged = {"Authorization": f"Bearer {sim.token_for(activity['serviceUrl'], key=SigningKey.generate())}"}
    forged_body = json.dumps(activity).encode()
    for second in range(1, 60, 5):  # a burst of forged kids within the minute: no fetch at all
        assert refused(adapter(sim, key_cache=cache), forged, forged_body, now + second) == "key"
    assert sim.metadata_requests == fetched
    for second in range(61, 120, 5):  # the next minute: exactly one
        assert refused(adapter(sim, key_cache=cache), forged, forged_body, now + second) == "key"
    assert sim.metadata_requests == fetched + 1


def test_a_rotated_key_is_picked_up_by_one_refresh(sim: TeamsSimulator) -> None:
    cache = DictKeyCache()
    now = time.time()
    headers, body = request(sim)
    adapter(sim, key_cache=cache).verify(url=URL, headers=headers, body=body, now=now)
    fetched = sim.metadata_requests
    sim.rotate_key()
    headers, body = request(sim)
    adapter(sim, key_cache=cache).verify(url=URL, headers=headers, body=body, now=now + 61)
    adapter(sim, key_cache=cache).verify(url=URL, headers=headers, body=body, now=now + 62)
    assert sim.metadata_requests == fetched + 1


def test_keys_are_reread_after_a_day(sim: TeamsSimulator) -> None:
    cache = DictKeyCache()
    now = time.time()
    headers, body = request(sim)
    adapter(sim, key_cache=cache).verify(url=URL, headers=headers, body=body, now=now)
    fetched = sim.metadata_requests
    adapter(sim, key_cache=cache).verify(url=URL, headers=headers, body=body, now=now + 3600)
    assert sim.metadata_requests == fetched
    late = int(now + 86_500)
    headers, body = request(sim, exp=late + 600, nbf=late)
    adapter(sim, key_cache=cache).verify(url=URL, headers=headers, body=body, now=late)
    assert sim.metadata_requests == fetched + 1


def test_unreachable_keys_are_transient_not_a_forgery(sim: TeamsSimulator) -> None:
    headers, body = request(sim)
    dead = f"https://127.0.0.1:{closed_port()}/v1/.well-known/openidconfiguration"
    with pytest.raises(VendorUnavailable):
        adapter(sim, openid_metadata_url=dead).verify(url=URL, headers=headers, body=body, now=time.time())
    sim.inject(outage="503")
    with pytest.raises(VendorUnavailable):
        adapter(sim).verify(url=URL, headers=headers, body=body, now=time.time())


def test_oversized_body_is_refused_before_anything_else(sim: TeamsSimulator) -> None:
    headers, _ = request(sim)
    body = b'{"type":"message","text":"' + b"x" * MAX_WEBHOOK_BYTES + b'"}'
    a = adapter(sim)
    with pytest.raises(PayloadInvalid, match="exceeds"):
        a.verify(url=URL, headers=headers, body=body, now=time.time())
    with pytest.raises(PayloadInvalid, match="exceeds"):
        a.parse(headers=headers, body=body)
    assert sim.metadata_requests >= 0  # and no key fetch was needed to refuse it


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"text": "no type"}', b"\xff"])
def test_malformed_activity_is_payload_invalid(sim: TeamsSimulator, body: bytes) -> None:
    headers, _ = request(sim)
    with pytest.raises(PayloadInvalid):
        adapter(sim).verify(url=URL, headers=headers, body=body, now=time.time())
    with pytest.raises(PayloadInvalid):
        adapter(sim).parse(headers=headers, body=body)


# --- parse ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"activity_type": "conversationUpdate"}, "activity:conversationUpdate"),
        ({"activity_type": "typing"}, "activity:typing"),
        ({"activity_type": "invoke"}, "activity:invoke"),
        ({"activity_type": "messageReaction"}, "activity:messageReaction"),
        ({"text": "", "attachments": [{"contentType": "image/png", "contentUrl": "https://x/y.png"}]},
         "unsupported:attachment"),
        ({"text": "   "}, "empty"),
        ({"from": {"id": "28:other-bot", "role": "bot"}}, "bot_message"),
    ],
)  # fmt: skip
def test_activities_we_do_not_answer_are_ignored(
    sim: TeamsSimulator, changes: dict[str, Any], reason: str
) -> None:
    text = changes.pop("text", "hello")
    activity = sim.message_activity(text, **changes)
    assert adapter(sim).parse(headers={}, body=json.dumps(activity).encode()).ignored == (reason,)


def test_the_bots_own_activity_is_ignored(sim: TeamsSimulator) -> None:
    activity = sim.message_activity("echo")
    activity["from"] = dict(activity["recipient"])
    assert adapter(sim).parse(headers={}, body=json.dumps(activity).encode()).ignored == ("bot_message",)


def test_bot_mention_is_stripped(sim: TeamsSimulator) -> None:
    conversation = "19:abc@thread.tacv2;messageid=1716000000000"
    activity = sim.message_activity(
        "what is  my order status?",
        mention_bot=True,
        conversation_type="channel",
        conversation_id=conversation,
    )
    (message,) = adapter(sim).parse(headers={}, body=json.dumps(activity).encode()).messages
    assert message.text == "what is my order status?"
    assert message.conversation_key == "19:abc@thread.tacv2;messageid=1716000000000"


@pytest.mark.parametrize("missing", ["id", "serviceUrl", "from", "conversation"])
def test_message_without_required_fields_is_payload_invalid(sim: TeamsSimulator, missing: str) -> None:
    activity = sim.message_activity("hi")
    del activity[missing]
    with pytest.raises(PayloadInvalid):
        adapter(sim).parse(headers={}, body=json.dumps(activity).encode())


# --- send -------------------------------------------------------------------------------------------


def reply_ref(
    sim: TeamsSimulator, conversation_id: str = "a:1simPersonalChat", activity_id: str = "1716"
) -> dict:
    return {"service_url": sim.service_url, "conversation_id": conversation_id, "activity_id": activity_id,
            "bot_id": sim.bot_id}  # fmt: skip


def test_send_replies_to_the_activity_exactly_once(sim: TeamsSimulator) -> None:
    conversation = "19:abc@thread.tacv2;messageid=1716000000000"
    before = len(sim.sent(conversation))
    sent = adapter(sim).send(reply_ref=reply_ref(sim, conversation, "1716000000000"), text="Grüße ✓")
    activities = sim.sent(conversation)
    assert len(activities) == before + 1
    assert activities[-1]["text"] == "Grüße ✓"
    assert activities[-1]["reply_to_id"] == "1716000000000"
    assert activities[-1]["activity"]["from"] == {"id": sim.bot_id}
    assert sent.platform_message_id == activities[-1]["id"]


def test_send_without_activity_id_posts_to_the_conversation(sim: TeamsSimulator) -> None:
    adapter(sim).send(reply_ref=reply_ref(sim, "a:1proactive", ""), text="An agent replied.")
    assert sim.sent("a:1proactive")[-1]["reply_to_id"] is None


def test_token_is_shared_through_the_key_cache_until_it_expires(sim: TeamsSimulator) -> None:
    cache = DictKeyCache()
    issued = sim.token_requests
    adapter(sim, key_cache=cache).send(reply_ref=reply_ref(sim), text="one")
    adapter(sim, key_cache=cache).send(reply_ref=reply_ref(sim), text="two")
    assert sim.token_requests == issued + 1
    sim.expire_tokens()  # revoked early: the 401 gets one new token and one retry
    adapter(sim, key_cache=cache).send(reply_ref=reply_ref(sim), text="three")
    assert sim.token_requests == issued + 2
    assert sim.sent("a:1simPersonalChat")[-1]["text"] == "three"


def test_rate_limit_carries_retry_after(sim: TeamsSimulator) -> None:
    sim.inject(rate_limit={"count": 1, "retry_after": 7})
    with pytest.raises(RateLimited) as info:
        adapter(sim).send(reply_ref=reply_ref(sim), text="hi")
    assert info.value.retry_after == 7.0
    assert not info.value.permanent


@pytest.mark.parametrize(
    ("app_id", "app_password", "code"),
    [
        (TeamsSimulator.app_id, "wrong-secret", "invalid_client"),
        ("not-our-app", TeamsSimulator.app_password, "unauthorized_client"),
    ],
)
def test_bad_credentials_are_auth_failed(
    sim: TeamsSimulator, app_id: str, app_password: str, code: str
) -> None:
    with pytest.raises(AuthFailed) as info:
        adapter(sim, app_id=app_id, app_password=app_password).send(reply_ref=reply_ref(sim), text="hi")
    assert info.value.permanent
    assert info.value.code == code
    with pytest.raises(AuthFailed):
        adapter(sim, app_id=app_id, app_password=app_password).test()


def test_missing_conversation_is_permanent(sim: TeamsSimulator) -> None:
    sim.missing_conversations.add("a:1gone")
    with pytest.raises(ConnectorError) as info:
        adapter(sim).send(reply_ref=reply_ref(sim, "a:1gone"), text="hi")
    assert type(info.value) is ConnectorError
    assert info.value.permanent
    assert info.value.code == "ConversationNotFound"


@pytest.mark.parametrize(
    "fault",
    [
        {"errors": [{"status": 500, "count": 1}]},
        {"errors": [{"status": 502, "count": 1}]},
        {"outage": "503"},
        {"outage": "reset"},
    ],
)
def test_outages_are_transient(sim: TeamsSimulator, fault: dict[str, Any]) -> None:
    sim.inject(**fault)
    with pytest.raises(VendorUnavailable) as info:
        adapter(sim).send(reply_ref=reply_ref(sim), text="hi")
    assert not info.value.permanent


def test_timeout_is_transient(sim: TeamsSimulator) -> None:
    a = adapter(sim)
    a.token()  # the token is cached; the slow part is the reply
    sim.inject(latency_ms=800)
    assert a.session is not None
    a.session.timeout = (0.5, 0.3)
    with pytest.raises(VendorUnavailable, match="Timed out"):
        a.send(reply_ref=reply_ref(sim), text="hi")


@pytest.mark.parametrize("service_url", ["https://evil.example/", "http://127.0.0.1/teams/", ""])
def test_reply_ref_outside_the_allow_list_is_refused_without_a_request(
    sim: TeamsSimulator, service_url: str
) -> None:
    issued = sim.token_requests
    with pytest.raises(ConnectorError) as info:
        adapter(sim).send(reply_ref={**reply_ref(sim), "service_url": service_url}, text="hi")
    assert info.value.permanent and info.value.code == "bad_reply_ref"
    assert sim.token_requests == issued


def test_no_secret_in_errors_or_logs(sim: TeamsSimulator, caplog: pytest.LogCaptureFixture) -> None:
    cache = DictKeyCache()
    caught: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        a = adapter(sim, key_cache=cache)
        token = a.token()
        for fault in ({"rate_limit": {"count": 1}}, {"errors": [{"status": 500, "count": 1}]}):
            sim.clear_faults()
            sim.inject(**fault)
            with pytest.raises(ConnectorError) as info:
                adapter(sim, key_cache=cache).send(reply_ref=reply_ref(sim), text="hi")
            caught.append(info.value)
        sim.clear_faults()
        with pytest.raises(AuthFailed) as auth:
            adapter(sim, app_password="typo-" + sim.app_password).test()
        caught.append(auth.value)
    for secret in (sim.app_password, token):
        assert secret not in caplog.text
        for exc in caught:
            assert all(secret not in text for text in error_texts(exc))


def test_config() -> None:
    fields = {f.name: f for f in TeamsAdapter.config_fields}
    assert fields["app_password"].secret and not fields["app_id"].secret
    assert fields["openid_metadata_url"].url and fields["token_url"].url
    assert TeamsAdapter.kind == "teams"
    assert TeamsAdapter(config={"app_id": "a", "app_password": "p"}).token_url == TOKEN_URL
    single = TeamsAdapter(config={"app_id": "a", "app_password": "p", "tenant_id": "contoso.onmicrosoft.com"})
    assert single.token_url == TENANT_TOKEN_URL.format(tenant="contoso.onmicrosoft.com")
    with pytest.raises(InvalidConfig, match="app_password"):
        TeamsAdapter(config={"app_id": "a"})


# --- the simulator, end to end and against the Bot Framework SDK unchanged ---------------------------


def test_simulated_message_reaches_the_webhook_and_the_reply_reaches_teams(sim: TeamsSimulator) -> None:
    a = adapter(sim)
    with receiver(a) as hook:
        response = sim.deliver_message(
            hook.url, "Status of order 42?", conversation_id="a:1e2e", locale="fr-FR"
        )
        assert response.status_code == 200
        forged = sim.deliver_message(hook.url, "x", token=sim.token_for(key=SigningKey.generate()))
        assert forged.status_code == 401
    assert hook.refused == ["key"]
    (message,) = hook.events[0].messages
    assert (message.text, message.locale) == ("Status of order 42?", "fr-FR")
    a.send(reply_ref=message.reply_ref, text="Order 42 has shipped.")
    reply = sim.sent("a:1e2e")[-1]
    assert reply["text"] == "Order 42 has shipped."
    assert reply["reply_to_id"] == message.platform_message_id


def test_msal_and_connector_client_unchanged_against_the_simulator(sim: TeamsSimulator) -> None:
    import msal
    from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
    from botframework.connector import ConnectorClient
    from msrest.authentication import BasicTokenAuthentication

    app = msal.ConfidentialClientApplication(
        sim.app_id,
        client_credential=sim.app_password,
        authority=f"{sim.base_url}/botframework.com",
        instance_discovery=False,  # the simulator is not a host Microsoft's discovery knows
        http_client=simulator_session(sim),
    )
    result = app.acquire_token_for_client(scopes=["https://api.botframework.com/.default"])
    assert "access_token" in result, result.get("error")
    client = ConnectorClient(BasicTokenAuthentication({"access_token": result["access_token"]}),
                             base_url=sim.service_url)  # fmt: skip
    client.config.connection.verify = sim.ca_bundle
    reply = Activity(type="message", text="from the SDK", from_property=ChannelAccount(id=sim.bot_id),
                     conversation=ConversationAccount(id="a:1sdk"), reply_to_id="1716000000001")  # fmt: skip
    response = client.conversations.reply_to_activity("a:1sdk", "1716000000001", reply)
    assert response.id == sim.sent("a:1sdk")[-1]["id"]
    assert sim.sent("a:1sdk")[-1]["reply_to_id"] == "1716000000001"


def run_async(coroutine: Any) -> Any:
    """Run the SDK's coroutine on a loop of its own thread: in a full run the browser tests' Playwright
    keeps an event loop running in this thread, where asyncio.run() refuses to start another."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_bot_framework_sdk_validates_the_simulators_tokens(
    sim: TeamsSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botbuilder.schema import Activity
    from botframework.connector.auth import ChannelValidation, JwtTokenValidation, SimpleCredentialProvider

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sim.ca_bundle))  # the SDK fetches keys with plain requests
    monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint",
                        sim.describe()["openid_metadata_url"])  # fmt: skip
    activity_json = sim.message_activity("hi")
    activity = Activity().deserialize(activity_json)
    credentials = SimpleCredentialProvider(sim.app_id, sim.app_password)
    header = f"Bearer {sim.token_for(activity_json['serviceUrl'])}"
    identity = run_async(JwtTokenValidation.authenticate_request(activity, header, credentials))
    assert identity.is_authenticated
    assert identity.get_claim_value("aud") == sim.app_id
    wrong = f"Bearer {sim.token_for(activity_json['serviceUrl'], aud='someone-else')}"
    with pytest.raises(PermissionError):
        run_async(JwtTokenValidation.authenticate_request(activity, wrong, credentials))


def test_simulator_is_registered(tmp_path: Path) -> None:
    from connectors.simulators import simulator_class

    assert simulator_class("teams") is TeamsSimulator
    d = TeamsSimulator(state_dir=tmp_path).describe()
    assert {"app_id", "app_password", "openid_metadata_url", "token_url", "service_url"} <= set(d)
    assert (tmp_path / "teams" / "signing-key.pem").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("body", [b"", b"{not json", b"\xff", b"null", b"[]", b'{"text": "no type"}'])
def test_simulator_answers_a_bad_activity_with_bad_argument(sim: TeamsSimulator, body: bytes) -> None:
    path = "/teams/v3/conversations/a:1simPersonalChat/activities"
    headers = {"authorization": f"Bearer {sim.tokens.issue()}"}
    before = len(sim.activities)
    response = sim.dispatch(SimRequest("POST", path, {}, headers, body))
    assert response.status == 400
    assert json.loads(response.body)["error"]["code"] == "BadArgument"
    assert len(sim.activities) == before
    good = sim.dispatch(SimRequest("POST", path, {}, headers, b'{"type": "message", "text": "hi"}'))
    assert good.status == 201
    assert sim.activities[-1]["text"] == "hi"


def test_jwt_from_the_simulator_is_a_real_rs256_bot_connector_token(sim: TeamsSimulator) -> None:
    token = sim.token_for()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    public = sim.keys[0].private_key.public_key()
    claims = jwt.decode(
        token, public, algorithms=["RS256"], audience=sim.app_id, issuer="https://api.botframework.com"
    )
    assert claims["serviceurl"] == sim.service_url


# --- the tenant-verified e-mail (conversation member) -------------------------------------------------------
REF = {"conversation_id": "a:1simPersonalChat", "activity_id": "1"}


def test_user_email_is_the_member_email_of_the_bots_own_tenant(sim: TeamsSimulator) -> None:
    bot = adapter(sim, tenant_id=sim.tenant_id)
    ref = {**REF, "service_url": sim.service_url}
    assert bot.user_email(sender="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", reply_ref=ref) == "alice@example.com"
    sim.add_member(user_id="29:1simUpn", aad_object_id="aad-upn", name="Upn Only", upn="upn@example.com")
    assert bot.user_email(sender="29:1simUpn", reply_ref=ref) == "upn@example.com"


def test_user_email_is_empty_for_another_tenant_a_multi_tenant_bot_or_a_stranger(sim: TeamsSimulator) -> None:
    ref = {**REF, "service_url": sim.service_url}
    sim.add_member(user_id="29:1simGuest", aad_object_id="aad-guest", name="Guest", email="ann@example.com",
                   tenant_id="99999999-0000-4000-8000-000000000000")  # fmt: skip
    bot = adapter(sim, tenant_id=sim.tenant_id)
    assert bot.user_email(sender="29:1simGuest", reply_ref=ref) == ""
    assert bot.user_email(sender="29:1simNobody", reply_ref=ref) == ""  # 404: not a member
    assert adapter(sim).user_email(sender="29:1simUserAlice", reply_ref=ref) == ""  # no tenant configured
    elsewhere = {**ref, "service_url": "https://attacker.example/teams/"}
    assert bot.user_email(sender="29:1simUserAlice", reply_ref=elsewhere) == ""


def test_user_email_failures_are_typed(sim: TeamsSimulator) -> None:
    bot = adapter(sim, tenant_id=sim.tenant_id)
    bot.token()  # a token first: the outage hits the member call
    sim.inject(outage="503")
    with pytest.raises(VendorUnavailable):
        bot.user_email(sender="29:1simUserAlice", reply_ref={**REF, "service_url": sim.service_url})
