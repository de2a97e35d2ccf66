"""Management API rate limits (apps/tenants/ratelimit.py): per token or session user, per tenant, the audit
verify's stricter one; 429 with Retry-After, counted; Redis down; not the chat API; in the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.core import buckets, deadlines
from apps.observability import metrics
from apps.tenants.models import Role, Tenant
from tests.fixtures.auth import issue_token, session_client, token_client
from tests.fixtures.cache import kill_redis
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db

MEMBERS_A = "/api/v1/tenants/tenant-a/members/"
MEMBERS_B = "/api/v1/tenants/tenant-b/members/"
VERIFY_A = "/api/v1/tenants/tenant-a/audit/verify/"


def hits(scope: str) -> float:
    return float(metrics.RATE_LIMIT_HITS.labels(scope=scope)._value.get())


def statuses(client: APIClient, url: str, n: int) -> list[int]:
    return [client.get(url).status_code for _ in range(n)]


@pytest.fixture
def limits(settings: Any) -> Any:
    def set_limits(
        *, per_token: tuple[int, int], per_tenant: tuple[int, int], verify: tuple[int, int] = (100, 60)
    ) -> None:
        settings.HUB_API_RATE_PER_TOKEN = per_token
        settings.HUB_API_RATE_PER_TENANT = per_tenant
        settings.HUB_API_RATE_VERIFY = verify

    return set_limits


def test_a_token_over_its_limit_gets_429_with_retry_after_counted(limits: Any, alice_api: APIClient) -> None:
    limits(per_token=(3, 60), per_tenant=(1000, 60))
    before = hits("api_caller")
    assert statuses(alice_api, MEMBERS_A, 3) == [200, 200, 200]
    response = alice_api.get(MEMBERS_A)
    assert response.status_code == 429
    assert response["Retry-After"].isdigit() and 1 <= int(response["Retry-After"]) <= 20  # 1 token per 20 s
    assert response.json()["detail"].startswith("Request was throttled.")
    assert hits("api_caller") == before + 1


def test_other_tokens_of_the_tenant_work_until_the_tenant_limit(
    limits: Any, tenant_a: Tenant, alice: Any, alice_api: APIClient, charlie_api: APIClient
) -> None:
    limits(per_token=(3, 60), per_tenant=(5, 60))
    before = hits("api_tenant")
    second = token_client(issue_token(tenant_a, alice))
    assert statuses(alice_api, MEMBERS_A, 6) == [
        200,
        200,
        200,
        429,
        429,
        429,
    ]  # refusals spend no tenant budget
    assert statuses(second, MEMBERS_A, 3) == [200, 200, 429]  # 3 + 2 = the tenant's 5
    assert hits("api_tenant") == before + 1
    refused = second.get(MEMBERS_A)
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert statuses(charlie_api, MEMBERS_B, 3) == [200, 200, 200]  # tenant B has its own budget


def test_a_session_is_limited_per_user(limits: Any, alice: Any, alice_api: APIClient) -> None:
    limits(per_token=(2, 60), per_tenant=(1000, 60))
    session = session_client(alice)
    assert statuses(session, MEMBERS_A, 3) == [200, 200, 429]
    assert alice_api.get(MEMBERS_A).status_code == 200  # her token is another caller


def test_another_tenants_urls_never_spend_its_budget(
    limits: Any, alice_api: APIClient, charlie: Any, charlie_api: APIClient
) -> None:
    """charlie (of B) probing A's URLs gets 404s charged to himself, never to A."""
    limits(per_token=(4, 60), per_tenant=(2, 60))
    assert statuses(charlie_api, MEMBERS_A, 5) == [404, 404, 404, 404, 429]
    assert statuses(session_client(charlie), MEMBERS_A, 4) == [404, 404, 404, 404]
    assert statuses(alice_api, MEMBERS_A, 3) == [200, 200, 429]


def test_the_tenant_list_is_limited_per_caller(limits: Any, alice_api: APIClient) -> None:
    limits(per_token=(2, 60), per_tenant=(1, 60))
    assert statuses(alice_api, "/api/v1/tenants/", 3) == [200, 200, 429]


def test_verify_has_its_own_stricter_limit_per_tenant(
    limits: Any, tenant_a: Tenant, tenant_b: Tenant, officer: Any, member: Any
) -> None:
    limits(per_token=(100, 60), per_tenant=(100, 60), verify=(2, 60))
    before = hits("audit_verify")
    first, second = (token_client(issue_token(tenant_a, officer)) for _ in range(2))
    assert [first.post(VERIFY_A, format="json").status_code for _ in range(3)] == [200, 200, 429]
    refused = second.post(VERIFY_A, format="json")  # the verify limit is the tenant's, whatever the token
    assert (
        refused.status_code == 429 and refused["Retry-After"].isdigit() and int(refused["Retry-After"]) >= 1
    )
    assert hits("audit_verify") == before + 2
    assert second.get("/api/v1/tenants/tenant-a/audit/events/").status_code == 200  # the rest still works
    # The verify limit of A is not B's.
    b_officer = token_client(issue_token(tenant_b, member("olga", Role.COMPLIANCE_OFFICER, tenant=tenant_b)))
    b_verify = "/api/v1/tenants/tenant-b/audit/verify/"
    assert [b_officer.post(b_verify, format="json").status_code for _ in range(2)] == [200, 200]


def test_a_bad_verify_request_is_still_a_400(limits: Any, tenant_a: Tenant, officer: Any) -> None:
    limits(per_token=(100, 60), per_tenant=(100, 60), verify=(2, 60))
    client = token_client(issue_token(tenant_a, officer))
    response = client.post(VERIFY_A, {"from_seq": "x"}, format="json")
    assert response.status_code == 400 and "from_seq" in response.json()


def test_the_chat_api_is_not_limited_by_the_management_limits(
    limits: Any, api_client: Client, api_key_a: IssuedKey
) -> None:
    limits(per_token=(1, 60), per_tenant=(1, 60), verify=(1, 60))
    created = [
        api_client.post(
            "/api/v1/conversations", {"user_ref": "u"}, content_type="application/json", **api_key_a.headers
        ).status_code
        for _ in range(4)
    ]
    assert created == [201, 201, 201, 201]


# --- Redis down: the chat's policy ---


@pytest.fixture
def redis_down(settings: Any) -> Iterator[None]:
    kill_redis(settings)
    deadlines.redis_health.succeeded()
    yield
    deadlines.redis_health.succeeded()
    buckets.redis_client.cache_clear()


def test_without_redis_the_limits_fail_open_then_closed(
    limits: Any, alice_api: APIClient, redis_down: None, settings: Any
) -> None:
    limits(per_token=(1, 60), per_tenant=(1, 60))
    degraded = metrics.DEGRADED.labels(dependency="redis", feature="rate_limit")
    before = float(degraded._value.get())
    assert statuses(alice_api, MEMBERS_A, 3) == [200, 200, 200]  # within the window: not enforced
    assert float(degraded._value.get()) >= before + 3
    settings.HUB_CHAT_RATE_FAIL_OPEN_SECONDS = 0  # the outage has outlasted the fail-open window
    refused = alice_api.get(MEMBERS_A)
    assert refused.status_code == 503
    assert refused["Retry-After"] == str(settings.HUB_RETRY_AFTER_SECONDS)
    assert "detail" in refused.json()


# --- the schema ---


def test_the_schema_documents_429_on_management_operations_only(client: Client) -> None:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    management = [p for p in paths if p.startswith("/api/v1/tenants/")]
    assert management
    for path in management:
        for method, operation in paths[path].items():
            answer = operation["responses"].get("429")
            assert answer is not None, (method, path)
            assert "Retry-After" in answer["headers"], (method, path)
    verify = paths["/api/v1/tenants/{slug}/audit/verify/"]["post"]["responses"]["429"]
    assert "verifications" in verify["description"]
    chat = paths["/api/v1/conversations"]["post"]["responses"]["429"]  # the chat API keeps its own
    assert chat["description"].startswith("Rate limit of the key or the tenant")
