"""The cross-tenant sweep: every management API URL of tenant A, as charlie (admin of tenant B), is a 404.

Also: anonymous callers get 401 everywhere. The URL list is built from the URL patterns themselves, so an
endpoint added later under /api/v1/tenants/<slug>/ is swept without editing this file; a pattern the
builder cannot fill in fails the test rather than being skipped.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.tenants.models import Invitation, Membership, Role, Tenant
from apps.tenants.services import invitation_create
from tests.sweep import (
    _business_hours_pk,
    _channel_and_key,
    _connection_pk,
    _dsr_pk,
    _handoff_route_pk,
    _scim_token_pk,
    _sso_pks,
)

pytestmark = pytest.mark.django_db

WRITE_BODY = {"email": "charlie-was-here@example.com", "role": "admin", "name": "pwned"}


def _api_patterns() -> list[str]:
    """Return the api/v1/ routes that carry a tenant slug, e.g. `tenants/<slug:slug>/members/`."""
    routes: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern) and route.startswith("api/v1/") and "<slug:slug>" in route:
                routes.append(route)

    walk(get_resolver().url_patterns, "")
    return routes


def _a_urls(tenant_a: Tenant, alice: Any) -> list[str]:
    """Fill every tenant-scoped API route with tenant A's slug and real ids of A's objects."""
    bob_like = Membership.objects.filter(tenant=tenant_a).first()
    invitation = invitation_create(
        tenant=tenant_a, email="pending@example.com", role=Role.VIEWER, invited_by=alice, base_url="http://t/"
    )
    assert bob_like is not None
    channel, key = _channel_and_key(tenant_a)
    ids = {
        "members": bob_like.pk,
        "invitations": invitation.pk,
        "connections": _connection_pk(tenant_a),
        "channels": channel,
        "api-keys": key,
        "handoff-routes": _handoff_route_pk(tenant_a),
        "business-hours": _business_hours_pk(tenant_a),
        "identity-providers": _sso_pks(tenant_a)["provider"],
        "sso-domains": _sso_pks(tenant_a)["domain"],
        "role-mappings": _sso_pks(tenant_a)["mapping"],
        "scim-tokens": _scim_token_pk(tenant_a),
        "data-subject-requests": _dsr_pk(tenant_a),  # issue 22 (dsrapi)
    }
    urls = []
    for route in _api_patterns():
        url = "/" + route.replace("<slug:slug>", tenant_a.slug)
        url = url.replace("<int:seq>", "1")  # audit events (issue 22): tenant creation writes event #1
        for marker in ("<int:id>", "<uuid:id>"):
            if marker in url:
                collection = url.split("/")[5]  # /api/v1/tenants/<slug>/<collection>/<id>/...
                assert collection in ids, f"the sweep does not know how to fill in {route}"
                url = url.replace(marker, str(ids[collection]))
        assert "<" not in url, f"the sweep does not know how to fill in {route}"
        urls.append(url)
    return urls


def test_the_sweep_covers_every_endpoint(tenant_a: Tenant, alice: Any) -> None:
    urls = _a_urls(tenant_a, alice)
    assert len(urls) >= 8
    assert any(url.endswith("/revoke/") for url in urls)


@pytest.mark.parametrize("client_name", ["charlie_api", "charlie_session"])
def test_charlie_gets_404_on_every_tenant_a_url(
    client_name: str, request: pytest.FixtureRequest, tenant_a: Tenant, alice: Any
) -> None:
    client: APIClient = request.getfixturevalue(client_name)
    urls = _a_urls(tenant_a, alice)
    before = (Membership.objects.filter(tenant=tenant_a).count(), Invitation.objects.count())
    for url in urls:
        for method in ("get", "post", "patch", "put", "delete"):
            response = getattr(client, method)(url, WRITE_BODY, format="json")
            assert response.status_code in (404, 405), (method, url, response.status_code)
            if response.status_code == 404:
                assert response.json() == {"detail": "Not found."}, (method, url)
            assert "pending@example.com" not in response.content.decode()
    assert (Membership.objects.filter(tenant=tenant_a).count(), Invitation.objects.count()) == before
    assert Tenant.objects.get(pk=tenant_a.pk).name == "Tenant A"


def test_charlie_cannot_reach_as_objects_through_his_own_tenant(
    charlie_api: APIClient, tenant_a: Tenant, tenant_b: Tenant, alice: Any
) -> None:
    """A's object ids under B's slug are 404 too: objects are looked up inside the URL's tenant."""
    membership = Membership.objects.get(tenant=tenant_a, user=alice)
    invitation = invitation_create(
        tenant=tenant_a, email="pending@example.com", role=Role.VIEWER, invited_by=alice, base_url="http://t/"
    )
    base = f"/api/v1/tenants/{tenant_b.slug}"
    assert charlie_api.get(f"{base}/members/{membership.pk}/").status_code == 404
    assert charlie_api.patch(f"{base}/members/{membership.pk}/", {"role": "viewer"}).status_code == 404
    assert charlie_api.delete(f"{base}/members/{membership.pk}/").status_code == 404
    assert charlie_api.post(f"{base}/invitations/{invitation.pk}/revoke/").status_code == 404
    membership.refresh_from_db()
    invitation.refresh_from_db()
    assert membership.role == Role.ADMIN
    assert invitation.revoked_at is None


def test_tenant_list_never_shows_tenant_a_to_charlie(
    charlie_api: APIClient, charlie_session: APIClient, tenant_a: Tenant
) -> None:
    for client in (charlie_api, charlie_session):
        slugs = [t["slug"] for t in client.get("/api/v1/tenants/", {"q": "tenant"}).json()["results"]]
        assert slugs == ["tenant-b"]


def test_anonymous_gets_401_everywhere(tenant_a: Tenant, alice: Any) -> None:
    client = APIClient()
    for url in [*_a_urls(tenant_a, alice), "/api/v1/tenants/"]:
        for method in ("get", "post"):
            response = getattr(client, method)(url, {}, format="json")
            assert response.status_code in (401, 405), (method, url)


def test_nonexistent_tenant_looks_like_a_foreign_one(alice_api: APIClient, alice_session: APIClient) -> None:
    for client in (alice_api, alice_session):
        assert client.get("/api/v1/tenants/no-such-tenant/members/").json() == {"detail": "Not found."}
