"""The management API for SCIM tokens: admins list, create (secret once) and revoke; others are refused."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import ScimToken
from tests.fixtures.auth import issue_token, token_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/tenants/tenant-a/scim-tokens/"


def test_admin_creates_lists_and_revokes(alice_api: APIClient, tenant_a: Any, domain_a: Any) -> None:
    created = alice_api.post(URL, {"name": "Entra"}, format="json")
    assert created.status_code == 201, created.content
    assert created["Cache-Control"] == "no-store"
    body = created.json()
    assert body["token"].startswith(body["prefix"] + "_") and body["status"] == "active"
    listed = alice_api.get(URL).json()["results"]
    assert [t["prefix"] for t in listed] == [body["prefix"]] and "token" not in listed[0]
    scim = APIClient()
    scim.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert scim.get("/scim/v2/Users").status_code == 200
    revoked = alice_api.post(f"{URL}{body['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert scim.get("/scim/v2/Users").status_code == 401


def test_bad_input_is_400(alice_api: APIClient) -> None:
    assert alice_api.post(URL, {"name": ""}, format="json").status_code == 400
    assert (
        alice_api.post(URL, {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, format="json").status_code
        == 400
    )
    assert alice_api.post(URL, {"name": "x", "scope": "all"}, format="json").status_code == 400
    assert not ScimToken.objects.exists()


def test_viewer_is_refused_and_other_tenant_gets_404(
    tenant_a: Any, tenant_b: Any, bob: Any, charlie: Any
) -> None:
    viewer = token_client(issue_token(tenant_a, bob))
    assert viewer.get(URL).status_code == 403
    assert viewer.post(URL, {"name": "x"}, format="json").status_code == 403
    token = ScimToken.objects.create(tenant=tenant_a, name="a", prefix="hubs_a", token_hash="2" * 64)
    other = token_client(issue_token(tenant_b, charlie))
    assert other.get(URL).status_code == 404
    assert other.post(f"/api/v1/tenants/tenant-b/scim-tokens/{token.pk}/revoke/").status_code == 404
    assert ScimToken.objects.get(pk=token.pk).revoked_at is None
