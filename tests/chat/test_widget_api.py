"""The public web widget API: widget keys, CORS per channel, conversation tokens, rate limits, idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import signing
from django.test import Client

from apps.chat.models import Channel, Conversation, Message
from apps.chat.services import widget as widget_svc
from apps.core.context import tenant_context
from apps.knowledge.demo import seed_demo_knowledge
from apps.tenants.models import Tenant
from tests.chat.widget_support import JSON, SITE, headers, say, start, widget_enable

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_a(channel_a: Channel) -> str:
    return widget_enable(channel_a)


@pytest.fixture
def key_b(channel_b: Channel) -> str:
    return widget_enable(channel_b, origins=["https://b.example"])


def url(channel: Channel, rest: str = "conversations") -> str:
    return f"/widget/v1/{channel.pk}/{rest}"


# --- CORS -------------------------------------------------------------------------------------------------
def test_preflight_of_an_allowed_origin_is_answered_for_that_origin_only(
    api_client: Client, channel_a: Channel, key_a: str
) -> None:
    response = api_client.options(
        url(channel_a),
        HTTP_ORIGIN=SITE,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, x-widget-key",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SITE
    assert "X-Widget-Key" in response["Access-Control-Allow-Headers"]
    assert "Origin" in response["Vary"]
    assert "*" not in response["Access-Control-Allow-Origin"]


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://shop.example.evil.example", "http://shop.example", ""]
)
def test_other_origins_are_refused_403_and_counted(
    api_client: Client, channel_a: Channel, key_a: str, origin: str
) -> None:
    preflight = api_client.options(
        url(channel_a), HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight
    assert "Origin" in preflight["Vary"]
    response = api_client.post(url(channel_a), {}, content_type=JSON, **headers(key_a, origin=origin))
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response
    with tenant_context(channel_a.tenant):
        assert not Conversation.objects.exists()


def test_allowed_origin_starts_a_conversation_in_the_browser_locale(
    api_client: Client, channel_a: Channel, key_a: str, tenant_a: Tenant
) -> None:
    tenant_a.enabled_locales = ["en", "de", "fr"]
    tenant_a.save()
    started = start(api_client, channel_a, key_a, locales=["de-DE", "de", "en"])
    assert started["locale"] == "de"
    assert started["token"] and started["expires_in"] > 0
    response = api_client.post(url(channel_a), {"locales": ["ja-JP"]}, content_type=JSON, **headers(key_a))
    assert response.json()["locale"] == channel_a.default_locale  # not enabled: the channel's default
    assert response["Access-Control-Allow-Origin"] == SITE


def test_locale_choice() -> None:
    choose = widget_svc.locale_choose
    assert choose(browser=["fr-CA", "en"], enabled=["en", "fr"], default="en") == "fr"
    assert choose(browser=["de-AT"], enabled=["de-AT", "de"], default="en") == "de-AT"
    assert choose(browser=["es"], enabled=["en"], default="en") == "en"
    assert choose(browser=["pt-BR"], enabled=[], default="en") == "pt-BR"
    assert choose(browser=[], enabled=[], default="de") == "de"


# --- keys and tokens --------------------------------------------------------------------------------------
def test_bad_rotated_or_other_channels_key_is_401(
    api_client: Client, channel_a: Channel, channel_b: Channel, key_a: str, key_b: str
) -> None:
    for key in ["", "wk_nope", "x" * 500, key_b]:
        response = api_client.post(url(channel_a), {}, content_type=JSON, **headers(key))
        assert response.status_code == 401, key
    widget_enable(channel_a)  # rotated: the old key no longer works
    assert api_client.post(url(channel_a), {}, content_type=JSON, **headers(key_a)).status_code == 401


def test_the_secret_api_key_is_not_a_widget_key(
    api_client: Client, channel_a: Channel, key_a: str, api_key_a: Any
) -> None:
    response = api_client.post(url(channel_a), {}, content_type=JSON, **headers(api_key_a.plaintext))
    assert response.status_code == 401


def test_disabled_channel_is_403(api_client: Client, channel_a: Channel, key_a: str) -> None:
    channel_a.enabled = False
    channel_a.save()
    assert api_client.post(url(channel_a), {}, content_type=JSON, **headers(key_a)).status_code == 403


def test_other_tenants_conversation_token_is_404_everywhere(
    api_client: Client, channel_a: Channel, channel_b: Channel, key_a: str, key_b: str
) -> None:
    mine = start(api_client, channel_a, key_a)
    theirs_response = api_client.post(
        url(channel_b), {}, content_type=JSON, **headers(key_b, origin="https://b.example")
    )
    theirs = theirs_response.json()
    for conversation_id, token in [
        (theirs["conversation_id"], theirs["token"]),  # B's conversation and token through A's widget
        (theirs["conversation_id"], mine["token"]),  # A's token, B's conversation id
        (mine["conversation_id"], theirs["token"]),  # B's token on A's conversation
        (mine["conversation_id"], mine["token"] + "x"),  # forged
        (mine["conversation_id"], ""),
    ]:
        for rest, method in [("messages", "post"), ("messages", "get"), ("stream", "get")]:
            response = getattr(api_client, method)(
                url(channel_a, f"conversations/{conversation_id}/{rest}"),
                *([{"text": "hi"}] if method == "post" else []),
                **({"content_type": JSON} if method == "post" else {}),
                **headers(key_a, token=token),
            )
            assert response.status_code == 404, (rest, method, response.content)
    with tenant_context(channel_a.tenant):
        assert not Message.objects.exists()


def test_expired_token_is_404(
    api_client: Client, channel_a: Channel, key_a: str, settings: Any, monkeypatch: Any
) -> None:
    started = start(api_client, channel_a, key_a)
    real_loads = signing.loads
    monkeypatch.setattr(widget_svc.signing, "loads", lambda *a, **kw: real_loads(*a, **{**kw, "max_age": -1}))
    assert say(api_client, channel_a, key_a, started, "Hallo").status_code == 404


# --- messages ---------------------------------------------------------------------------------------------
def test_send_answers_with_the_chat_turn_and_citations_and_is_idempotent(
    api_client: Client, channel_a: Channel, key_a: str, tenant_a: Tenant
) -> None:
    seed_demo_knowledge([tenant_a])
    started = start(api_client, channel_a, key_a, locales=["de-DE"])
    question = "Wie lange habe ich Zeit, einen Artikel zurückzugeben?"
    first = say(api_client, channel_a, key_a, started, question, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 200, first.content
    reply = first.json()["reply"]
    assert reply["citations"][0]["article_key"] == "returns-policy"
    again = say(api_client, channel_a, key_a, started, question, HTTP_IDEMPOTENCY_KEY="k1")
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    with tenant_context(tenant_a):
        assert Message.objects.count() == 2
    listed = api_client.get(
        url(channel_a, f"conversations/{started['conversation_id']}/messages") + "?after=0",
        **headers(key_a, token=started["token"]),
    ).json()["messages"]
    assert [m["role"] for m in listed] == ["user", "assistant"]
    after = api_client.get(
        url(channel_a, f"conversations/{started['conversation_id']}/messages") + f"?after={listed[0]['id']}",
        **headers(key_a, token=started["token"]),
    ).json()["messages"]
    assert [m["id"] for m in after] == [listed[1]["id"]]


def test_reply_streams_in_chunks_with_citations_last(
    api_client: Client, channel_a: Channel, key_a: str, tenant_a: Tenant
) -> None:
    seed_demo_knowledge([tenant_a])
    started = start(api_client, channel_a, key_a, locales=["de"])
    response = say(
        api_client,
        channel_a,
        key_a,
        started,
        "Wie lange habe ich Zeit, einen Artikel zurückzugeben?",
        HTTP_ACCEPT="text/event-stream",
    )
    body = b"".join(response.streaming_content).decode()
    names = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
    assert names[0] == "start" and names[-2:] == ["citations", "done"]
    assert names.count("delta") > 1
    assert response["Access-Control-Allow-Origin"] == SITE


def test_bad_input_is_400_never_500(
    api_client: Client, channel_a: Channel, key_a: str, settings: Any
) -> None:
    started = start(api_client, channel_a, key_a)
    message_url = url(channel_a, f"conversations/{started['conversation_id']}/messages")
    for body in ["{", "[]", '{"text": 5}', '{"text": ""}']:
        response = api_client.post(
            message_url, body, content_type=JSON, **headers(key_a, token=started["token"])
        )
        assert response.status_code == 400, body
    big = api_client.post(
        message_url,
        {"text": "x" * (settings.HUB_CHAT_MAX_BODY + 10)},
        content_type=JSON,
        **headers(key_a, token=started["token"]),
    )
    assert big.status_code == 413
    bad_after = api_client.get(message_url + "?after=abc", **headers(key_a, token=started["token"]))
    assert bad_after.status_code == 400


# --- rate limits ------------------------------------------------------------------------------------------
def test_visitor_rate_limit_is_429_with_retry_after(
    api_client: Client, channel_a: Channel, key_a: str, settings: Any
) -> None:
    settings.HUB_WIDGET_RATE_PER_VISITOR = (2, 60)
    started = start(api_client, channel_a, key_a)
    codes = [say(api_client, channel_a, key_a, started, "Hallo").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    refused = say(api_client, channel_a, key_a, started, "Hallo")
    assert int(refused["Retry-After"]) >= 1
    assert refused["Access-Control-Allow-Origin"] == SITE  # the widget can read it
    other = start(api_client, channel_a, key_a)  # another visitor of the same site is not held back
    assert say(api_client, channel_a, key_a, other, "Hallo").status_code == 200


def test_key_rate_limit_covers_all_visitors(
    api_client: Client, channel_a: Channel, key_a: str, settings: Any
) -> None:
    settings.HUB_WIDGET_RATE_PER_KEY = (3, 60)
    first = start(api_client, channel_a, key_a)
    second = start(api_client, channel_a, key_a)
    assert say(api_client, channel_a, key_a, first, "Hallo").status_code == 200
    assert say(api_client, channel_a, key_a, second, "Hallo").status_code == 429


def test_no_key_or_token_in_error_bodies_or_logs(
    api_client: Client, channel_a: Channel, key_a: str, caplog: Any
) -> None:
    started = start(api_client, channel_a, key_a)
    forged = started["token"][:-3] + "abc"
    secrets_sent = [key_a + "x", forged, started["token"]]
    with caplog.at_level("DEBUG"):
        bodies = [
            api_client.post(url(channel_a), {}, content_type=JSON, **headers(key_a + "x")).content,
            say(api_client, channel_a, key_a + "x", started, "Hallo").content,
            api_client.get(
                url(channel_a, f"conversations/{started['conversation_id']}/stream"),
                **headers(key_a, token=forged),
            ).content,
            api_client.post(
                url(channel_a, f"conversations/{started['conversation_id']}/messages"),
                "{",
                content_type=JSON,
                **headers(key_a, token=started["token"]),
            ).content,
        ]
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    for secret in secrets_sent:
        assert all(secret.encode() not in body for body in bodies)
        assert secret not in logged


def test_identity_proof_goes_to_the_chat_start(api_client: Client, channel_a: Channel, key_a: str) -> None:
    """A signed-in user's proof (user hash) is checked like the chat API's; before the identity slice is
    merged the chat start takes no proof and the visitor stays anonymous."""
    import hashlib
    import hmac
    import inspect

    from apps.chat.services import conversations

    channel_a.identity_mode = "hmac"
    channel_a.identity_secret = "site-secret"
    with tenant_context(channel_a.tenant):
        channel_a.save()
    proof = hmac.new(b"site-secret", b"user-42", hashlib.sha256).hexdigest()
    started = start(api_client, channel_a, key_a, user_id="user-42", user_hash=proof)
    checks_proofs = "user_hash" in inspect.signature(conversations.conversation_start).parameters
    assert started["identity_verified"] is checks_proofs
