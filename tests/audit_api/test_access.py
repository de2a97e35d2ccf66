"""Who may read and verify the audit log: view_audit (compliance officers, admins), by session or token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.tenants.models import ManagementToken, Tenant
from apps.tenants.services import management_token_revoke
from tests.fixtures.auth import issue_token, session_client, token_client

pytestmark = pytest.mark.django_db

BASE = "/api/v1/tenants/{slug}/audit/"
NOT_FOUND = {"detail": "Not found."}

Append = Callable[..., list[int]]  # the `append` fixture (conftest.py)


def _calls(slug: str) -> list[tuple[str, str]]:
    base = BASE.format(slug=slug)
    return [("get", f"{base}events/"), ("get", f"{base}events/1/"), ("post", f"{base}verify/")]


@pytest.mark.parametrize("who", ["officer", "alice"])
@pytest.mark.parametrize("via", ["token", "session"])
def test_compliance_officers_and_admins_read_and_verify(
    who: str, via: str, tenant_a: Tenant, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(who)
    client = session_client(user) if via == "session" else token_client(issue_token(tenant_a, user))
    for method, url in _calls(tenant_a.slug):
        response = getattr(client, method)(url, format="json")
        assert response.status_code == 200, (method, url, response.content)
    assert client.get(f"{BASE.format(slug=tenant_a.slug)}events/1/").json()["action"] == "tenant.created"


@pytest.mark.parametrize("via", ["token", "session"])
def test_a_viewer_is_refused(via: str, tenant_a: Tenant, bob: Any) -> None:
    client = (
        session_client(bob, verified=False) if via == "session" else token_client(issue_token(tenant_a, bob))
    )
    for method, url in _calls(tenant_a.slug):
        response = getattr(client, method)(url, format="json")
        assert response.status_code == 403, (method, url, response.status_code)


@pytest.mark.parametrize("client_name", ["charlie_api", "charlie_session"])
def test_another_tenant_gets_404_everywhere(
    client_name: str, request: pytest.FixtureRequest, tenant_a: Tenant, tenant_b: Tenant, alice: Any
) -> None:
    client: APIClient = request.getfixturevalue(client_name)
    for method, url in _calls(tenant_a.slug):
        response = getattr(client, method)(url, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json() == NOT_FOUND
        assert "tenant.created" not in response.content.decode()


def test_a_token_of_another_tenant_is_404_even_for_an_admin_of_both(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any, member: Any
) -> None:
    """alice is admin of A; her token for B (where she is admin too) does not open A."""
    from apps.tenants.models import Role
    from apps.tenants.services import membership_add

    membership_add(tenant=tenant_b, user=alice, role=Role.ADMIN)
    client = token_client(issue_token(tenant_b, alice))
    for method, url in _calls(tenant_a.slug):
        assert getattr(client, method)(url, format="json").status_code == 404, url
    assert client.get(f"{BASE.format(slug=tenant_b.slug)}events/").status_code == 200


def test_revoked_and_expired_tokens_are_401(tenant_a: Tenant, officer: Any) -> None:
    plaintext = issue_token(tenant_a, officer)
    client = token_client(plaintext)
    assert client.get(f"{BASE.format(slug=tenant_a.slug)}events/").status_code == 200
    token = ManagementToken.objects.get(tenant=tenant_a, user=officer)
    management_token_revoke(token=token)
    expired = token_client(issue_token(tenant_a, officer, expires_at=timezone.now() + timedelta(hours=1)))
    ManagementToken.objects.exclude(pk=token.pk).filter(user=officer).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for method, url in _calls(tenant_a.slug):
        assert getattr(client, method)(url, format="json").status_code == 401, url
        assert getattr(expired, method)(url, format="json").status_code == 401, url
        assert getattr(APIClient(), method)(url, format="json").status_code == 401, url


def test_an_absent_event_is_404(olivia_api: APIClient, tenant_a: Tenant) -> None:
    base = BASE.format(slug=tenant_a.slug)
    assert olivia_api.get(f"{base}events/999999/").json() == NOT_FOUND
    assert olivia_api.get(f"{base}events/{'9' * 30}/").status_code == 404  # past a bigint: no 500
    assert olivia_api.get(f"{base}events/0/").status_code == 404


def test_tenant_b_events_never_show_under_a(
    olivia_api: APIClient, tenant_a: Tenant, tenant_b: Tenant, charlie: Any, append: Append
) -> None:
    from apps.audit.services import audit_record

    append(tenant_b, 200)
    secret = audit_record("test.of_b", tenant=tenant_b, target_label="b-only")
    base = BASE.format(slug=tenant_a.slug)
    listed = olivia_api.get(f"{base}events/", {"limit": "1000"}).json()["results"]
    assert listed and all(event["tenant_id"] == tenant_a.id for event in listed)
    assert "b-only" not in str(listed)
    assert olivia_api.get(f"{base}events/{secret.seq}/").json() == NOT_FOUND  # a seq only B's chain has
