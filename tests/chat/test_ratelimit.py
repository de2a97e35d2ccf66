"""Chat rate limits: 429 with Retry-After per key and per tenant, shared by processes; the settings parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from apps.chat.models import Channel
from hub.settings.env import env_rate
from tests.fixtures.chat import IssuedKey, issue_key

pytestmark = pytest.mark.django_db

CONVERSATIONS = "/api/v1/conversations"
ROOT = Path(__file__).resolve().parents[2]


def _start(client: APIClient, key: IssuedKey) -> Any:
    return client.post(CONVERSATIONS, {"user_ref": "u"}, content_type="application/json", **key.headers)


@pytest.fixture
def limits(settings: Any) -> Any:
    def set_limits(*, per_key: tuple[int, int], per_tenant: tuple[int, int]) -> None:
        settings.HUB_CHAT_RATE_PER_KEY = per_key
        settings.HUB_CHAT_RATE_PER_TENANT = per_tenant

    return set_limits


def test_per_key_limit_answers_429_with_retry_after(
    limits: Any, api_client: APIClient, api_key_a: IssuedKey
) -> None:
    limits(per_key=(3, 60), per_tenant=(1000, 60))
    assert [_start(api_client, api_key_a).status_code for _ in range(3)] == [201, 201, 201]
    response = _start(api_client, api_key_a)
    assert response.status_code == 429
    retry_after = response["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 20  # one token comes back every 20 s at 3/min
    assert response.json()["detail"].startswith("Request was throttled.")


def test_tenant_limit_is_shared_by_all_its_keys_and_not_by_others(
    limits: Any, api_client: APIClient, channel_a: Channel, api_key_a: IssuedKey, api_key_b: IssuedKey
) -> None:
    limits(per_key=(100, 60), per_tenant=(4, 60))
    second_a = issue_key(channel_a, name="second")
    assert [_start(api_client, api_key_a).status_code for _ in range(2)] == [201, 201]
    assert [_start(api_client, second_a).status_code for _ in range(3)] == [201, 201, 429]
    assert _start(api_client, api_key_a).status_code == 429
    assert _start(api_client, api_key_b).status_code == 201  # tenant B has its own bucket


def test_a_throttled_key_does_not_drain_its_tenant(
    limits: Any, api_client: APIClient, channel_a: Channel, api_key_a: IssuedKey
) -> None:
    limits(per_key=(2, 60), per_tenant=(3, 60))
    other = issue_key(channel_a, name="other")
    statuses = [_start(api_client, api_key_a).status_code for _ in range(10)]
    assert statuses == [201, 201] + [429] * 8
    assert _start(api_client, other).status_code == 201  # 8 refusals were not charged to the tenant


def test_limits_are_shared_across_processes(limits: Any, api_client: APIClient, api_key_a: IssuedKey) -> None:
    """Another process (another web worker) spends the key's budget through the same throttle classes."""
    limits(per_key=(3, 60), per_tenant=(1000, 60))
    key = api_key_a.key
    script = f"""
import django
django.setup()
from django.conf import settings
from rest_framework.request import Request
from django.test import RequestFactory
from apps.chat.principal import ChannelInfo, ChannelPrincipal
from apps.chat.ratelimit import chat_throttles
from apps.core.context import TenantRef
import uuid
settings.HUB_CHAT_RATE_PER_KEY = (3, 60)
principal = ChannelPrincipal(
    key_id={key.pk}, key_prefix="x", scopes=frozenset({{"chat"}}),
    tenant=TenantRef(id={key.tenant_id}, slug="tenant-a", region="eu"),
    channel=ChannelInfo(id=uuid.uuid4(), kind="web", name="w", default_locale="en", allowed_actions=(),
                        knowledge_base_id=None, content_region="eu", ticket_connection_id=None,
                        lead_connection_id=None),
)
granted = 0
for _ in range(2):
    request = Request(RequestFactory().post("/api/v1/conversations"))
    request._authenticator, request._user, request._auth = None, None, principal
    granted += all(t.allow_request(request, None) for t in chat_throttles())
print(granted)
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "2"
    assert _start(api_client, api_key_a).status_code == 201  # the third of three
    assert _start(api_client, api_key_a).status_code == 429


def test_requests_without_a_key_are_not_throttled_but_refused(
    limits: Any, api_client: APIClient, api_key_a: IssuedKey
) -> None:
    limits(per_key=(1, 60), per_tenant=(1, 60))
    for _ in range(3):
        assert api_client.post(CONVERSATIONS, {}, content_type="application/json").status_code == 401
    assert _start(api_client, api_key_a).status_code == 201


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("120/min", (120, 60)), ("10/s", (10, 1)), ("1000/5min", (1000, 300)), (" 7 / hour ", (7, 3600))],
)
def test_env_rate_parses(monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[int, int]) -> None:
    monkeypatch.setenv("HUB_TEST_RATE", raw)
    assert env_rate("HUB_TEST_RATE", "1/s") == expected


@pytest.mark.parametrize("raw", ["", "120", "120/fortnight", "0/min", "-1/min", "10/0min", "ten/min"])
def test_env_rate_refuses_malformed_values(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HUB_TEST_RATE", raw)
    with pytest.raises(ImproperlyConfigured, match="HUB_TEST_RATE"):
        env_rate("HUB_TEST_RATE", "1/s")
