"""Management tokens: format, hashing, refusal of bad tokens, tenant scope, throttled last-use writes."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.context import current_tenant_or_none
from apps.tenants.models import ManagementToken, Membership, Tenant
from apps.tenants.services import management_token_create, management_token_revoke
from tests.fixtures.auth import issue_token, token_client

pytestmark = pytest.mark.django_db

MEMBERS_A = "/api/v1/tenants/tenant-a/members/"
INVITATIONS_A = "/api/v1/tenants/tenant-a/invitations/"


def test_token_format_and_only_the_hash_is_stored(tenant_a: Tenant, alice: Any) -> None:
    token, plaintext = management_token_create(tenant=tenant_a, user=alice, name="ci", expires_at=None)
    scheme, prefix_part, secret = plaintext.split("_", 2)
    assert scheme == "hubm"
    assert token.prefix == f"hubm_{prefix_part}"
    assert plaintext.startswith(token.prefix + "_")
    assert len(secret) >= 40
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    stored = ManagementToken.objects.filter(pk=token.pk).values().get()
    assert not any(secret in str(value) for value in stored.values())


def test_token_create_refuses_non_members_and_past_expiry(tenant_a: Tenant, charlie: Any, alice: Any) -> None:
    from apps.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        management_token_create(tenant=tenant_a, user=charlie, name="x", expires_at=None)
    assert "user" in info.value.errors
    with pytest.raises(ValidationFailed) as info:
        management_token_create(
            tenant=tenant_a, user=alice, name=" ", expires_at=timezone.now() - timedelta(days=1)
        )
    assert set(info.value.errors) == {"name", "expires_at"}


def test_valid_token_authenticates_and_sets_no_lingering_context(alice_api: APIClient) -> None:
    response = alice_api.get(MEMBERS_A)
    assert response.status_code == 200
    assert current_tenant_or_none() is None  # the context was reset when the request ended


def _assert_401(response: Any, message: str) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer hubm_0123456789_not-a-real-secret-at-all",
        "Bearer nonsense",
        "Bearer",
        "Bearer two parts",
    ],
)
def test_unknown_or_malformed_token_is_401(alice: Any, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(MEMBERS_A)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_revoked_token_is_401(tenant_a: Tenant, alice: Any) -> None:
    token, plaintext = management_token_create(tenant=tenant_a, user=alice, name="ci", expires_at=None)
    management_token_revoke(token=token)
    _assert_401(token_client(plaintext).get(MEMBERS_A), "revoked")


def test_expired_token_is_401(tenant_a: Tenant, alice: Any) -> None:
    token, plaintext = management_token_create(
        tenant=tenant_a, user=alice, name="ci", expires_at=timezone.now() + timedelta(days=1)
    )
    ManagementToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_401(token_client(plaintext).get(MEMBERS_A), "expired")


def test_token_of_removed_member_is_401(tenant_a: Tenant, alice: Any, bob: Any, bob_api: APIClient) -> None:
    Membership.objects.filter(tenant=tenant_a, user=bob).delete()
    _assert_401(bob_api.get(MEMBERS_A), "no longer a member")


def test_token_of_inactive_user_is_401(bob: Any, bob_api: APIClient) -> None:
    bob.is_active = False
    bob.save()
    _assert_401(bob_api.get(MEMBERS_A), "inactive")


def test_no_credentials_is_401_with_bearer_challenge(tenant_a: Tenant) -> None:
    response = APIClient().get(MEMBERS_A)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_token_of_tenant_b_on_tenant_a_url_is_404(charlie_api: APIClient, tenant_a: Tenant) -> None:
    response = charlie_api.get(MEMBERS_A)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_operator_token_is_still_scoped_to_its_tenant(
    tenant_a: Tenant, tenant_b: Tenant, operator: Any
) -> None:
    client = token_client(issue_token(tenant_a, operator))
    assert client.get(MEMBERS_A).status_code == 200
    assert client.get("/api/v1/tenants/tenant-b/").status_code == 404
    slugs = [t["slug"] for t in client.get("/api/v1/tenants/").json()["results"]]
    assert slugs == ["tenant-a"]


def test_last_used_at_is_written_at_most_once_a_minute(
    alice_api: APIClient, django_assert_num_queries: Any
) -> None:
    token = ManagementToken.objects.get()
    assert token.last_used_at is None
    assert alice_api.get(MEMBERS_A).status_code == 200
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None

    # Within the interval: no write.
    assert alice_api.get(MEMBERS_A).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == first_use

    # After the interval: written again.
    ManagementToken.objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(minutes=2))
    assert alice_api.get(MEMBERS_A).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_at > first_use - timedelta(minutes=2)


def test_token_requests_skip_csrf(alice_api: APIClient, tenant_a: Tenant) -> None:
    client = alice_api
    client.handler.enforce_csrf_checks = True
    response = client.post(
        "/api/v1/tenants/tenant-a/invitations/", {"email": "new@example.com"}, format="json"
    )
    assert response.status_code == 201


def test_session_writes_need_csrf(tenant_a: Tenant, alice: Any) -> None:
    from tests.fixtures.auth import session_client

    client = session_client(alice)
    client.handler.enforce_csrf_checks = True
    response = client.post(
        "/api/v1/tenants/tenant-a/invitations/", {"email": "new@example.com"}, format="json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
