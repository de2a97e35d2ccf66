"""Proving identity through the chat API: at the start of a conversation and mid-conversation (identify)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.chat.models import Conversation
from apps.chat.services.identity import Identity
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.fixtures.chat import IssuedKey
from tests.fixtures.metrics import scrape, value
from tests.identity.helpers import SECRET, channel_identity, hmac_proof, id_token

pytestmark = pytest.mark.django_db

JSON = "application/json"
INVALID = "The identity proof is not valid."


def post(client: Client, key: IssuedKey, path: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/conversations{path}", body, content_type=JSON, **key.headers)


def stored(tenant: Tenant, conversation_id: str) -> tuple[bool, Identity | None]:
    with tenant_context(tenant):
        row = Conversation.objects.get(pk=conversation_id)
        return row.identity_verified, Identity.from_json(row.verified_identity)


def test_valid_user_hash_verifies_the_conversation(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    channel_identity(api_key_a.key.channel, mode="hmac")
    response = post(api_client, api_key_a, "", hmac_proof("user-42"))
    assert response.status_code == 201, response.content
    assert response.json()["identity_verified"] is True
    assert stored(tenant_a, response.json()["id"]) == (True, Identity(user_id="user-42"))
    with tenant_context(tenant_a):  # stored encrypted, like the user reference
        raw = Conversation.objects.values_list("verified_identity", flat=True).get(pk=response.json()["id"])
    assert raw and "user-42" not in raw


def test_valid_jwt_verifies_with_email_and_phone_and_names_the_user(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    token = id_token(channel, sub="cust-9", email="Ann@Example.com", phone="+49 151 12345678")
    response = post(api_client, api_key_a, "", {"identity_token": token})
    assert response.status_code == 201, response.content
    verified, ident = stored(tenant_a, response.json()["id"])
    assert verified and ident == Identity(user_id="cust-9", email="ann@example.com", phone="+4915112345678")
    with tenant_context(tenant_a):
        assert Conversation.objects.get(pk=response.json()["id"]).user_ref == "cust-9"
    # A user_ref that is not the token's subject is refused.
    assert post(api_client, api_key_a, "", {"identity_token": token, "user_ref": "cust-1"}).status_code == 400


def test_invalid_proofs_are_400_with_one_message_and_counted(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    channel = channel_identity(api_key_a.key.channel, mode="hmac")
    labels = {"tenant": "tenant-a", "channel": "web"}
    before = scrape()
    wrong = post(api_client, api_key_a, "", {"user_ref": "user-42", "user_hash": "0" * 64})
    other_secret = post(api_client, api_key_a, "", hmac_proof("user-42", secret="another channel's secret"))
    token_on_hmac = post(api_client, api_key_a, "", {"identity_token": id_token(channel)})
    ok = post(api_client, api_key_a, "", hmac_proof("user-42"))
    after = scrape()
    for response in (wrong, other_secret, token_on_hmac):
        assert response.status_code == 400
        body = response.json()
        assert INVALID in str(body)
        assert SECRET not in str(body) and "0" * 64 not in str(body)
    assert ok.status_code == 201

    def moved(**extra: str) -> float:
        sample = "hub_chat_identity_proofs_total"
        return value(after, sample, **labels, **extra) - value(before, sample, **labels, **extra)

    assert moved(mode="hmac", result="signature") == 2
    assert moved(mode="hmac", result="mode") == 1
    assert moved(mode="hmac", result="verified") == 1
    with tenant_context(tenant_a):
        assert Conversation.objects.filter(identity_verified=True).count() == 1


def test_a_jwt_channel_refuses_expired_and_other_channels_tokens(
    api_client: Client, api_key_a: IssuedKey, api_key_b: IssuedKey
) -> None:
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    expired = id_token(channel, issued=0)
    other = id_token(api_key_b.key.channel)
    for token in (expired, other):
        response = post(api_client, api_key_a, "", {"identity_token": token})
        assert response.status_code == 400 and INVALID in str(response.json())


def test_no_proof_is_anonymous_and_a_proof_on_a_channel_without_identity_is_refused(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    anonymous = post(api_client, api_key_a, "", {"user_ref": "user-42"})
    assert anonymous.status_code == 201 and anonymous.json()["identity_verified"] is False
    assert stored(tenant_a, anonymous.json()["id"]) == (False, None)
    # identity_mode "none": nothing can verify, so a proof is a client mistake, not silently ignored.
    assert post(api_client, api_key_a, "", hmac_proof("user-42")).status_code == 400
    # A mode without a secret fails closed.
    channel_identity(api_key_a.key.channel, mode="hmac", secret="")
    assert post(api_client, api_key_a, "", hmac_proof("user-42", secret="")).status_code == 400


def test_identify_mid_conversation(api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant) -> None:
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    conversation = post(api_client, api_key_a, "", {}).json()
    path = f"/{conversation['id']}/identify"
    assert post(api_client, api_key_a, path, {}).status_code == 400
    bad = post(api_client, api_key_a, path, {"identity_token": id_token(channel, secret="x" * 40)})
    assert bad.status_code == 400 and INVALID in str(bad.json())
    assert stored(tenant_a, conversation["id"]) == (False, None)
    good = post(api_client, api_key_a, path, {"identity_token": id_token(channel, email="ann@example.com")})
    assert good.status_code == 200, good.content
    assert good.json()["identity_verified"] is True and good.json()["id"] == conversation["id"]
    assert stored(tenant_a, conversation["id"]) == (True, Identity(user_id="user-1", email="ann@example.com"))
    assert post(api_client, api_key_a, path, {"nonsense": 1}).status_code == 400


def test_other_tenant_gets_404_on_identify_even_with_a_valid_proof(
    api_client: Client, api_key_a: IssuedKey, api_key_b: IssuedKey, tenant_a: Tenant
) -> None:
    channel_identity(api_key_a.key.channel, mode="hmac")
    channel_identity(api_key_b.key.channel, mode="hmac")
    conversation = post(api_client, api_key_a, "", {}).json()
    for body in ({}, hmac_proof("user-42")):
        response = post(api_client, api_key_b, f"/{conversation['id']}/identify", body)
        assert response.status_code == 404
        assert conversation["id"] not in response.content.decode()
    assert post(api_client, api_key_b, "/not-a-uuid/identify", hmac_proof("u")).status_code == 404
    assert stored(tenant_a, conversation["id"]) == (False, None)


def test_no_secret_or_proof_reaches_a_log_line(
    api_client: Client, api_key_a: IssuedKey, caplog: pytest.LogCaptureFixture
) -> None:
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    good = id_token(channel, email="ann@example.com")
    forged = id_token(channel, secret="y" * 40)
    with caplog.at_level("DEBUG"):
        assert post(api_client, api_key_a, "", {"identity_token": forged}).status_code == 400
        assert post(api_client, api_key_a, "", {"identity_token": good}).status_code == 201
    for needle in (SECRET, forged, good, forged.split(".")[2], "ann@example.com"):
        assert needle not in caplog.text
