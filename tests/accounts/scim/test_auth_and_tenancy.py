"""SCIM tokens: only a live token of the tenant gets in; another tenant's token never sees or changes data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ScimGroup, ScimToken, ScimUser

pytestmark = pytest.mark.django_db


def _401(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert response.json()["status"] == "401"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer hubs_nope_nope",
        "Bearer hubm_abc_def",  # a management token's scheme
        "Bearer " + "hubs_" + "x" * 300,
        "Bearer a b",
    ],
)
def test_missing_malformed_or_unknown_token_is_401(scim_a: Any, header: str | None) -> None:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    for path in ("/scim/v2/Users", "/scim/v2/ServiceProviderConfig", "/scim/v2/Anything"):
        _401(client.get(path))
    _401(client.post("/scim/v2/Users", "{}", content_type="application/scim+json"))


def test_revoked_and_expired_tokens_are_401(scim_a: Any, tenant_a: Any) -> None:
    token = ScimToken.objects.get(tenant=tenant_a)
    assert scim_a.call("GET", "Users").status_code == 200
    assert ScimToken.objects.get(pk=token.pk).last_used_at is not None
    ScimToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _401(scim_a.call("GET", "Users"))
    ScimToken.objects.filter(pk=token.pk).update(expires_at=None, revoked_at=timezone.now())
    _401(scim_a.call("GET", "Users"))


def test_inactive_tenant_token_is_401(scim_a: Any, tenant_a: Any) -> None:
    type(tenant_a).objects.filter(pk=tenant_a.pk).update(is_active=False)
    _401(scim_a.call("GET", "Users"))


def test_other_tenant_never_sees_or_changes_users_and_groups(
    scim_a: Any, scim_b: Any, tenant_a: Any, new_user: Any
) -> None:
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    group_id = scim_a.call(
        "POST", "Groups", {"displayName": "Hub Viewers", "members": [{"value": user_id}]}
    ).json()["id"]
    assert scim_b.call("GET", "Users").json()["totalResults"] == 0
    assert scim_b.call("GET", "Groups").json()["totalResults"] == 0
    assert scim_b.find("Users", 'userName eq "ann@acme.example"').json()["totalResults"] == 0
    patch = {"Operations": [{"op": "replace", "value": {"active": False}}]}
    for method, path, body in (
        ("GET", f"Users/{user_id}", None),
        ("PUT", f"Users/{user_id}", new_user()),
        ("PATCH", f"Users/{user_id}", patch),
        ("DELETE", f"Users/{user_id}", None),
        ("GET", f"Groups/{group_id}", None),
        ("PUT", f"Groups/{group_id}", {"displayName": "Mine"}),
        ("PATCH", f"Groups/{group_id}", {"Operations": [{"op": "remove", "path": "members"}]}),
        ("DELETE", f"Groups/{group_id}", None),
    ):
        response = scim_b.call(method, path, body)
        assert response.status_code == 404, (method, path, response.content)
    # B cannot put A's user into its own group either: the id is unknown to B.
    refused = scim_b.call("POST", "Groups", {"displayName": "Grab", "members": [{"value": user_id}]})
    assert refused.status_code == 400
    scim_user = ScimUser.objects.get(scim_id=user_id)
    assert scim_user.active and scim_user.user.is_active
    assert ScimGroup.objects.get(scim_id=group_id).members.count() == 1
    assert scim_a.call("GET", f"Users/{user_id}").json()["active"] is True


def test_other_tenant_cannot_link_this_tenants_account(scim_b: Any, alice: Any) -> None:
    """alice@example.com is tenant A's admin; B's client may not link her (example.com is not B's domain)."""
    body = {"userName": alice.email, "emails": [{"value": alice.email, "primary": True}]}
    assert scim_b.call("POST", "Users", body).status_code == 400
    assert not ScimUser.objects.filter(user=alice).exists()
