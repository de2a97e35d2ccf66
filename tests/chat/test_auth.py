"""ApiKeyAuthentication through the real chat endpoint: 401/403 answers, the cached lookup and its
invalidation, the tenant context, last-used tracking, scopes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.cache import cache, caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.chat.auth import _touch_key, lookup
from apps.chat.models import ApiKey, Channel
from apps.chat.principal import ChannelInfo, ChannelPrincipal
from apps.chat.services.channels import api_key_hash, channel_set_enabled, channel_update
from apps.core.context import current_tenant_or_none
from apps.tenants.models import Tenant
from apps.tenants.services import tenant_update
from tests.fixtures.auth import issue_token
from tests.fixtures.chat import IssuedKey, issue_key

pytestmark = pytest.mark.django_db

CONVERSATIONS = "/api/v1/conversations"


def _post(client: APIClient, authorization: str | None) -> Any:
    headers: dict[str, Any] = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    return client.post(CONVERSATIONS, {"user_ref": "u-1"}, content_type="application/json", **headers)


def test_a_valid_key_starts_a_conversation_in_its_tenant(
    api_client: APIClient, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    response = _post(api_client, f"Bearer {api_key_a.plaintext}")
    assert response.status_code == 201, response.content
    assert response.json()["region"] == "eu"
    assert current_tenant_or_none() is None  # the request's tenant context ended with it


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Send the channel's API key: “Authorization: Bearer <API key>”."),
        ("Bearer", "Malformed Authorization header: use “Bearer <API key>”."),
        ("Bearer a b", "Malformed Authorization header: use “Bearer <API key>”."),
        ("Bearer not-a-key", "Invalid API key."),
        ("Bearer hub_nosecret", "Invalid API key."),
        ("Bearer hub_0123456789_" + "x" * 43, "Invalid API key."),
        ("Bearer hub_0123456789_" + "x" * 300, "Invalid API key."),
    ],
)
def test_missing_malformed_or_unknown_keys_get_401(
    api_client: APIClient, api_key_a: IssuedKey, authorization: str | None, detail: str
) -> None:
    response = _post(api_client, authorization)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": detail}


def test_non_ascii_key_gets_401(api_client: APIClient) -> None:
    response = api_client.post(
        CONVERSATIONS,
        {},
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer hub_é_x".encode().decode("latin-1"),
    )
    assert response.status_code == 401


def test_a_management_token_is_not_a_chat_key(
    api_client: APIClient, tenant_a: Tenant, alice: Any, api_key_a: IssuedKey
) -> None:
    response = _post(api_client, f"Bearer {issue_token(tenant_a, alice)}")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key."}


def test_the_secret_never_reaches_the_logs(
    api_client: APIClient, api_key_a: IssuedKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = api_key_a.plaintext[:-4] + "abcd"
    assert _post(api_client, f"Bearer {wrong}").status_code == 401
    assert _post(api_client, f"Bearer {api_key_a.plaintext}").status_code == 201
    secret = api_key_a.plaintext.split("_", 2)[2]
    assert secret not in caplog.text
    assert wrong.split("_", 2)[2] not in caplog.text


def test_disabled_channel_gets_403_at_once(
    api_client: APIClient, api_key_a: IssuedKey, channel_a: Channel
) -> None:
    assert _post(api_client, f"Bearer {api_key_a.plaintext}").status_code == 201  # warm
    channel_set_enabled(channel=channel_a, enabled=False)
    response = _post(api_client, f"Bearer {api_key_a.plaintext}")
    assert response.status_code == 403
    assert response.json() == {"detail": "This API key's channel is disabled."}
    channel_set_enabled(channel=channel_a, enabled=True)
    assert _post(api_client, f"Bearer {api_key_a.plaintext}").status_code == 201


def test_suspended_tenant_gets_403_at_once(
    api_client: APIClient, api_key_a: IssuedKey, api_key_b: IssuedKey, tenant_a: Tenant
) -> None:
    assert _post(api_client, f"Bearer {api_key_a.plaintext}").status_code == 201  # warm
    tenant_update(tenant=tenant_a, is_active=False)
    response = _post(api_client, f"Bearer {api_key_a.plaintext}")
    assert response.status_code == 403
    assert response.json() == {"detail": "This API key's tenant is suspended."}
    assert _post(api_client, f"Bearer {api_key_b.plaintext}").status_code == 201


def test_a_key_without_the_chat_scope_gets_403(api_client: APIClient, channel_a: Channel) -> None:
    issued = issue_key(channel_a, scopes=["transcripts"])
    response = _post(api_client, f"Bearer {issued.plaintext}")
    assert response.status_code == 403
    assert response.json() == {"detail": "This API key lacks the “chat” scope."}


def test_lookup_is_one_query_then_cached_and_reflects_channel_changes(
    api_key_a: IssuedKey, channel_a: Channel, tenant_a: Tenant
) -> None:
    key_hash = api_key_hash(api_key_a.plaintext)
    with CaptureQueriesContext(connection) as first:
        entry = lookup(key_hash)
    assert len(first.captured_queries) == 1
    with CaptureQueriesContext(connection) as second:
        assert lookup(key_hash) == entry
    assert len(second.captured_queries) == 0
    assert entry is not None
    assert entry.principal == ChannelPrincipal(
        key_id=api_key_a.key.pk,
        key_prefix=api_key_a.key.prefix,
        scopes=frozenset({"chat", "transcripts"}),
        tenant=entry.principal.tenant,
        channel=ChannelInfo(
            id=channel_a.pk,
            kind="web",
            name="Website",
            default_locale="en",
            allowed_actions=("order_status", "create_ticket", "capture_lead", "handoff"),
            knowledge_base_id=None,
            content_region="eu",  # the tenant's home region, as the channel names none
            ticket_connection_id=None,
            lead_connection_id=None,
        ),
        locales=("en", "de"),  # the tenant's, default first: the metrics' locale label (issue 21)
    )
    assert (entry.principal.tenant.id, entry.principal.tenant.region) == (tenant_a.pk, "eu")
    channel_update(channel=channel_a, changes={"allowed_actions": ["handoff"], "content_region": "us"})
    changed = lookup(key_hash)
    assert changed is not None
    assert changed.principal.channel.allowed_actions == ("handoff",)
    assert changed.principal.channel.content_region == "us"


def test_last_used_is_written_at_most_once_per_minute(api_client: APIClient, api_key_a: IssuedKey) -> None:
    assert _post(api_client, f"Bearer {api_key_a.plaintext}").status_code == 201
    first = ApiKey.objects.get(pk=api_key_a.key.pk).last_used_at
    assert first is not None
    ApiKey.objects.filter(pk=api_key_a.key.pk).update(last_used_at=None)
    assert _post(api_client, f"Bearer {api_key_a.plaintext}").status_code == 201
    assert ApiKey.objects.get(pk=api_key_a.key.pk).last_used_at is None  # the gate held: no write
    cache.delete(_touch_key(api_key_a.key.key_hash))  # the minute is over
    assert _post(api_client, f"Bearer {api_key_a.plaintext}").status_code == 201
    assert ApiKey.objects.get(pk=api_key_a.key.pk).last_used_at is not None


def test_a_key_cannot_read_another_tenants_conversation(
    api_client: APIClient, api_key_a: IssuedKey, api_key_b: IssuedKey
) -> None:
    created = _post(api_client, f"Bearer {api_key_b.plaintext}").json()
    response = api_client.get(f"{CONVERSATIONS}/{created['id']}", **api_key_a.headers)
    assert response.status_code == 404
    assert api_client.get(f"{CONVERSATIONS}/{created['id']}", **api_key_b.headers).status_code == 200


def test_a_warm_lookup_is_still_one_redis_round_trip(api_key_a: IssuedKey) -> None:
    """The guard against stale fills rides in the lookup's existing Lua call: no extra round trip."""
    key_hash = api_key_hash(api_key_a.plaintext)
    assert lookup(key_hash) is not None  # cold: the read script, the database, the guarded fill
    redis = caches["default"]._cache.get_client(write=True)  # type: ignore[attr-defined]
    redis.config_resetstat()
    assert lookup(key_hash) is not None
    stats = {name: value["calls"] for name, value in redis.info("commandstats").items()}
    stats = {name: calls for name, calls in stats.items() if not name.startswith("cmdstat_config")}
    # One EVALSHA; Redis counts the commands the script ran too (GET entry, SET NX gate, GET guard).
    assert stats == {"cmdstat_evalsha": 1, "cmdstat_get": 2, "cmdstat_set": 1}, stats
