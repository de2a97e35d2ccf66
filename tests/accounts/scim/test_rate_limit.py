"""SCIM's limit per token (HUB_SCIM_RATE_PER_TOKEN): a Redis token bucket per token, refused in the SCIM error
envelope with Retry-After, counted as `scim_token`; without Redis, the shared fail-open-then-503 policy."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import override_settings

from apps.observability import metrics

pytestmark = pytest.mark.django_db

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def _hits() -> float:
    return float(metrics.RATE_LIMIT_HITS.labels(scope="scim_token")._value.get())


def _statuses(client: Any, n: int) -> list[int]:
    return [client.call("GET", "Users").status_code for _ in range(n)]


def _refusal(response: Any, status: int) -> int:
    """Check a SCIM error answer of `status` with Retry-After; return Retry-After's seconds."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/scim+json")
    body = response.json()
    assert sorted(body) == ["detail", "schemas", "status"] and body["detail"]
    assert body["schemas"] == [ERROR] and body["status"] == str(status)
    assert response["Retry-After"].isdigit(), response["Retry-After"]
    return int(response["Retry-After"])


def test_the_request_over_the_burst_gets_a_scim_429_with_the_wait_for_one_token(
    scim_a: Any, settings: Any
) -> None:
    settings.HUB_SCIM_RATE_PER_TOKEN = (3, 3600)  # a burst of 3, then one every 1200 s
    before = _hits()
    assert _statuses(scim_a, 3) == [200, 200, 200]
    limited = scim_a.call("GET", "Users")
    # the wait for the next token, not the rest of a window
    assert 1190 <= _refusal(limited, 429) <= 1200
    assert limited.json()["detail"] == "Too many requests for this token; slow down."
    assert _hits() == before + 1
    _refusal(scim_a.call("POST", "Users", {"userName": "x"}), 429)  # every method, before the body is read
    assert _hits() == before + 2


def test_other_tokens_of_the_tenant_and_other_tenants_are_not_held_back(
    scim_a: Any, scim_a_second: Any, scim_b: Any, settings: Any
) -> None:
    settings.HUB_SCIM_RATE_PER_TOKEN = (2, 3600)
    assert _statuses(scim_a, 3) == [200, 200, 429]
    assert _statuses(scim_a_second, 3) == [200, 200, 429]  # its own bucket, same tenant
    assert _statuses(scim_b, 3) == [200, 200, 429]  # another tenant's token
    assert _statuses(scim_a, 1) == [429]  # the others' requests gave nothing back


@override_settings(HUB_SCIM_RATE_PER_TOKEN=(2, 2))  # a burst of 2, refilled at one per second
def test_after_retry_after_one_more_request_passes(scim_a: Any) -> None:
    assert _statuses(scim_a, 2) == [200, 200]
    wait = _refusal(scim_a.call("GET", "Users"), 429)
    assert 1 <= wait <= 2
    time.sleep(wait)
    assert _statuses(scim_a, 2) == [200, 429]  # one token came back, not a new window of 2


def test_without_redis_requests_pass_within_the_window_then_503(
    scim_a: Any, redis_down: None, settings: Any
) -> None:
    settings.HUB_SCIM_RATE_PER_TOKEN = (1, 3600)
    degraded = metrics.DEGRADED.labels(dependency="redis", feature="rate_limit")
    before = float(degraded._value.get())
    assert _statuses(scim_a, 3) == [200, 200, 200]  # not enforced within HUB_CHAT_RATE_FAIL_OPEN_SECONDS
    assert float(degraded._value.get()) == before + 3
    settings.HUB_CHAT_RATE_FAIL_OPEN_SECONDS = 0  # the outage has outlasted the fail-open window
    refused = scim_a.call("GET", "Users")
    assert _refusal(refused, 503) == settings.HUB_RETRY_AFTER_SECONDS
