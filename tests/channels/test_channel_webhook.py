"""The channel webhook attacked, per platform: every refusal is 401/400/413 with a counter and no row; what a
platform expects (handshakes, ignored events, status reports) is answered and never a 500."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client, RequestFactory

from apps.chat.models import InboundEvent
from apps.chat.webhook_views import channel_webhook_view
from apps.core.context import tenant_context
from apps.integrations.models import OutboxMessage
from apps.observability import metrics
from connectors.messaging import MAX_WEBHOOK_BYTES
from connectors.teams.simulator import SigningKey
from connectors.twilio.simulator import twilio_signature
from connectors.whatsapp.simulator import meta_json
from tests.channels.platforms import Signed, Wired, message, post, process_all, relay, tampered, wire

pytestmark = pytest.mark.django_db


def rows(wired: Wired) -> int:
    with tenant_context(wired.tenant):
        return InboundEvent.objects.filter(channel_id=wired.channel.id).count()


def refused(kind: str, reason: str) -> float:
    return float(metrics.CHANNEL_WEBHOOKS_REFUSED.labels(kind=kind, reason=reason)._value.get())


def ignored(kind: str) -> float:
    return float(metrics.CHANNEL_MESSAGES.labels(kind=kind, direction="in", outcome="ignored")._value.get())


def forged(wired: Wired, signed: Signed) -> Signed:
    """The same request signed with a secret that is not the channel's (a forged JWT for Teams)."""
    sim, headers = wired.sim, dict(signed.headers)
    if wired.kind == "whatsapp":
        digest = hmac.new(b"not-the-app-secret", signed.body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    elif wired.kind == "slack":
        headers = sim.sign(signed.body, secret="not-the-signing-secret")
    elif wired.kind == "teams":
        activity = json.loads(signed.body)
        token = sim.token_for(activity["serviceUrl"], key=SigningKey.generate())
        headers = {"Authorization": f"Bearer {token}"}
    else:
        params = dict(item.split("=", 1) for item in signed.body.decode().split("&"))
        headers["X-Twilio-Signature"] = twilio_signature("not-the-auth-token", "http://testserver/x", params)
    return Signed(signed.body, headers, signed.content_type, signed.platform_message_id)


SIGNATURE_HEADER = {
    "whatsapp": "X-Hub-Signature-256",
    "slack": "X-Slack-Signature",
    "teams": "Authorization",
    "sms": "X-Twilio-Signature",
}


def test_wrong_secret_is_401_counted_and_stores_nothing(wired: Wired, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    signed = message(wired)
    response = post(Client(), wired, forged(wired, signed))
    assert response.status_code == 401 and rows(wired) == 0
    assert response.content == b""  # nothing about which check failed
    described = wired.sim.describe()
    for secret in ("app_secret", "signing_secret", "app_password", "auth_token", "access_token", "bot_token"):
        if described.get(secret):
            assert described[secret] not in caplog.text


def test_a_tampered_body_is_401(wired: Wired) -> None:
    signed = message(wired)
    if wired.kind == "teams":  # the Bot Connector's JWT binds the serviceUrl, not the body bytes
        activity = json.loads(signed.body)
        activity["serviceUrl"] = "https://attacker.example/"
        signed = Signed(json.dumps(activity).encode(), signed.headers, signed.content_type, "")
    else:
        signed = tampered(signed)
    assert post(Client(), wired, signed).status_code == 401
    assert rows(wired) == 0


def test_a_missing_signature_header_is_401_counted(wired: Wired) -> None:
    signed = message(wired)
    headers = {k: v for k, v in signed.headers.items() if k != SIGNATURE_HEADER[wired.kind]}
    total = sum(s.get() for m in metrics.CHANNEL_WEBHOOKS_REFUSED.collect() for s in [_Sample(m, wired.kind)])
    assert post(Client(), wired, Signed(signed.body, headers, signed.content_type, "")).status_code == 401
    assert rows(wired) == 0
    after = sum(s.get() for m in metrics.CHANNEL_WEBHOOKS_REFUSED.collect() for s in [_Sample(m, wired.kind)])
    assert after == total + 1


class _Sample:
    """The sum of the refusal counter's samples of one kind."""

    def __init__(self, metric: Any, kind: str) -> None:
        self.value = sum(
            s.value for s in metric.samples if s.name.endswith("_total") and s.labels.get("kind") == kind
        )

    def get(self) -> float:
        return float(self.value)


def test_slack_stale_timestamp_is_401(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "slack", sims["slack"])
    signed = message(w)
    stale = sims["slack"].sign(signed.body, timestamp=int(time.time()) - 600)
    before = refused("slack", "stale")
    assert post(Client(), w, Signed(signed.body, stale, signed.content_type, "")).status_code == 401
    assert refused("slack", "stale") == before + 1 and rows(w) == 0


def test_teams_expired_token_is_401(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "teams", sims["teams"])
    signed = message(w)
    activity = json.loads(signed.body)
    now = int(time.time())
    token = sims["teams"].token_for(activity["serviceUrl"], exp=now - 3600, nbf=now - 7200, iat=now - 7200)
    response = post(
        Client(), w, Signed(signed.body, {"Authorization": f"Bearer {token}"}, signed.content_type, "")
    )
    assert response.status_code == 401 and rows(w) == 0


def test_twilio_signature_for_another_url_is_401(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "sms", sims["sms"])
    params = sims["sms"].message_params("+4915112345678", "Hallo")
    for url in ("https://testserver" + w.path, "http://testserver/hooks/channels/other/"):
        headers = {"X-Twilio-Signature": twilio_signature(sims["sms"].auth_token, url, params)}
        signed = Signed(urlencode(params).encode(), headers, "application/x-www-form-urlencoded", "")
        assert post(Client(), w, signed).status_code == 401
    assert rows(w) == 0


def test_twilio_behind_a_tls_proxy_verifies_the_public_url(
    tenant_a: Any, sims: dict[str, Any], settings: Any
) -> None:
    """With SECURE_PROXY_SSL_HEADER set, the https URL Twilio called is the one checked."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    w = wire(tenant_a, "sms", sims["sms"])
    params = sims["sms"].message_params("+4915112345678", "Hallo")
    url = "https://testserver" + w.path
    headers = {
        "X-Twilio-Signature": twilio_signature(sims["sms"].auth_token, url, params),
        "X-Forwarded-Proto": "https",
    }
    signed = Signed(urlencode(params).encode(), headers, "application/x-www-form-urlencoded", "")
    assert post(Client(), w, signed).status_code == 200
    assert rows(w) == 1


def test_an_oversized_body_is_413_without_reading_it(wired: Wired) -> None:
    class Unreadable(io.RawIOBase):
        def read(self, *args: Any) -> bytes:
            raise AssertionError("the body was read")

    request = RequestFactory().post(wired.path, data=b"", content_type="application/json")
    request.META["CONTENT_LENGTH"] = str(MAX_WEBHOOK_BYTES + 1)
    request.META["wsgi.input"] = Unreadable()
    request._stream = Unreadable()  # type: ignore[assignment]
    before = refused(wired.kind, "too_large")
    assert channel_webhook_view(request, channel_id=wired.channel.id).status_code == 413
    assert refused(wired.kind, "too_large") == before + 1 and rows(wired) == 0


def test_an_oversized_body_without_a_length_is_413(wired: Wired) -> None:
    signed = message(wired)
    big = Signed(signed.body + b" " * (MAX_WEBHOOK_BYTES + 1), signed.headers, signed.content_type, "")
    assert post(Client(), wired, big).status_code == 413 and rows(wired) == 0


@pytest.mark.parametrize("kind", ["whatsapp", "slack"])
def test_malformed_json_with_a_valid_signature_is_400(kind: str, tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, kind, sims[kind])
    body = b'{"object": "whatsapp_business_account", "entry": [' if kind == "whatsapp" else b"{not json"
    headers = sims[kind].sign(body)
    before = refused(kind, "malformed")
    assert post(Client(), w, Signed(body, headers, "application/json", "")).status_code == 400
    assert refused(kind, "malformed") == before + 1 and rows(w) == 0


def test_a_twilio_form_without_a_message_sid_is_400(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "sms", sims["sms"])
    params = {"From": "+4915112345678", "Body": "Hallo"}
    headers = {
        "X-Twilio-Signature": twilio_signature(sims["sms"].auth_token, "http://testserver" + w.path, params)
    }
    signed = Signed(urlencode(params).encode(), headers, "application/x-www-form-urlencoded", "")
    assert post(Client(), w, signed).status_code == 400


def test_media_and_unknown_events_are_ignored_counted_and_never_a_turn(wired: Wired) -> None:
    if wired.kind == "whatsapp":
        signed = message(wired, "Foto", kind="image")
    elif wired.kind == "slack":
        signed = message(wired, "joined", event_type="member_joined_channel")
    elif wired.kind == "teams":
        signed = message(wired, "", activity_type="conversationUpdate")
    else:
        signed = message(wired, "Foto", media=1)
    before = ignored(wired.kind)
    response = post(Client(), wired, signed)
    assert response.status_code == 200, response.content
    assert ignored(wired.kind) == before + 1
    assert rows(wired) == 0


def test_the_bots_own_slack_message_is_ignored(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "slack", sims["slack"])
    before = ignored("slack")
    signed = message(w, "my own reply", bot_id="B0SIMBOT")
    assert post(Client(), w, signed).status_code == 200
    assert ignored("slack") == before + 1 and rows(w) == 0


def test_whatsapp_verify_token_handshake(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    token = sims["whatsapp"].describe()["verify_token"]
    client = Client()
    ok = client.get(
        w.path, {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    )
    assert ok.status_code == 200 and ok.content == b"1158201444"
    bad = client.get(w.path, {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
    assert bad.status_code == 403


def test_a_get_to_a_platform_without_handshake_is_405(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "slack", sims["slack"])
    assert Client().get(w.path).status_code == 405
    assert Client().put(w.path).status_code == 405


def test_slack_url_verification_is_answered_with_the_challenge(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "slack", sims["slack"])
    body = json.dumps({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"}).encode()  # fmt: skip
    response = post(Client(), w, Signed(body, sims["slack"].sign(body), "application/json", ""))
    assert response.status_code == 200
    assert b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.content
    assert rows(w) == 0


def test_whatsapp_delivery_statuses_are_recorded_on_the_sent_message(
    tenant_a: Any, sims: dict[str, Any]
) -> None:
    sim = sims["whatsapp"]
    w = wire(tenant_a, "whatsapp", sim)
    post(Client(), w, message(w, "Hallo"))
    process_all(w)
    relay(w)
    with tenant_context(tenant_a):
        sent = OutboxMessage.objects.get(connection=w.connection)
    assert sent.vendor_id.startswith("wamid.")

    def status(value: str) -> None:
        payload = sim.envelope({"statuses": [{"id": sent.vendor_id, "status": value, "timestamp": "1",
                                               "recipient_id": "4915112345678"}]})  # fmt: skip
        body = meta_json(payload)
        assert post(Client(), w, Signed(body, sim.sign(body), "application/json", "")).status_code == 200

    status("read")
    status("delivered")  # late and out of order: "read" stays
    with tenant_context(tenant_a):
        delivery = OutboxMessage.objects.get(pk=sent.pk).payload["delivery"]
        assert delivery["status"] == "read"
        assert OutboxMessage.objects.filter(
            connection=w.connection, stream="messages", payload__delivery__status="read"
        ).exists()
    assert rows(w) == 1  # statuses are not messages


def test_twilio_answers_empty_twiml(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "sms", sims["sms"])
    response = post(Client(), w, message(w, "Hallo"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith(("text/xml", "application/xml"))


def test_teams_signing_keys_unreachable_is_503_with_retry_after(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "teams", sims["teams"])
    signed = message(w)  # signed while the simulator is up
    sims["teams"].inject(outage="503")
    before = refused("teams", "keys_unavailable")
    try:
        response = post(Client(), w, signed)
    finally:
        sims["teams"].clear_faults()
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert refused("teams", "keys_unavailable") == before + 1 and rows(w) == 0


def test_a_flood_on_one_channel_gets_429_and_redis_down_fails_open(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from apps.chat.services import channel_inbound
    from apps.integrations.resilience import BucketConfig

    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    monkeypatch.setattr(channel_inbound, "CHANNEL_RATE", BucketConfig(capacity=1, rate=0.01))
    client = Client()
    assert post(client, w, message(w, "eins")).status_code == 200
    limited = post(client, w, message(w, "zwei"))
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert rows(w) == 1

    class Down:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RedisConnectionError("redis is down")

    monkeypatch.setattr(channel_inbound, "TokenBucket", Down)
    assert post(client, w, message(w, "drei")).status_code == 200
    assert rows(w) == 2


def test_the_database_away_is_503_so_the_platform_retries(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    from django.db import OperationalError

    from apps.chat import webhook_views

    w = wire(tenant_a, "slack", sims["slack"])

    def away(**kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(webhook_views, "channel_endpoint_find", away)
    response = post(Client(), w, message(w))
    assert response.status_code == 503 and response["Retry-After"] == "30"


def test_refused_signatures_are_counted_per_account_for_the_console(
    tenant_a: Any, sims: dict[str, Any]
) -> None:
    from apps.audit.models import AuditEvent
    from apps.integrations.selectors.webhooks import webhook_rejections

    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    client = Client()
    for _ in range(2):
        assert post(client, w, forged(w, message(w))).status_code == 401
    with tenant_context(tenant_a):
        counts = webhook_rejections(connections=[w.connection])[w.connection.pk]
    assert counts == {"mismatch": 2}
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="webhook.rejected").count() == 1
    assert rows(w) == 0


def test_the_delivery_report_counts_messages_in_replies_out_and_platform_statuses(
    tenant_a: Any, sims: dict[str, Any]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.chat.selectors.channel_inbound import channel_deliveries

    sim = sims["whatsapp"]
    w = wire(tenant_a, "whatsapp", sim)
    client = Client()
    post(client, w, message(w, "Hallo"))
    post(client, w, message(w, "Foto", kind="image"))  # ignored: no row
    process_all(w)
    relay(w)
    with tenant_context(tenant_a):
        sent = OutboxMessage.objects.get(connection=w.connection)
    report_failed = {
        "id": sent.vendor_id,
        "status": "failed",
        "timestamp": "1",
        "recipient_id": "4915112345678",
        "errors": [{"code": 131026, "title": "Undeliverable"}],
    }
    body = meta_json(sim.envelope({"statuses": [report_failed]}))
    assert post(client, w, Signed(body, sim.sign(body), "application/json", "")).status_code == 200
    with tenant_context(tenant_a):
        report = channel_deliveries(channel=w.channel, since=timezone.now() - timedelta(hours=1))
    assert report.inbound == {"done": 1}
    assert report.outbound == {"delivered": 1}
    assert report.platform == {"failed": 1}
