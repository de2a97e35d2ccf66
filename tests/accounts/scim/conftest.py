"""SCIM fixtures: each tenant's IdP with a verified domain, a SCIM token and clients speaking SCIM JSON."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services.scim import scim_token_create
from apps.tenants.models import Role, Tenant

SCIM = "application/scim+json"


class ScimClient(APIClient):
    """An API client that sends SCIM JSON and decodes the answers."""

    def call(self, method: str, path: str, body: Any = None, **extra: Any) -> Any:
        url = path if path.startswith("/") else f"/scim/v2/{path}"
        kwargs: dict[str, Any] = {"HTTP_ACCEPT": SCIM, **extra}
        if body is not None:
            kwargs.update(data=body if isinstance(body, str | bytes) else _json(body), content_type=SCIM)
        return getattr(self, method.lower())(url, **kwargs)

    def find(self, resource: str, query: str, **params: Any) -> Any:
        """GET /scim/v2/<resource>?filter=<query> (URL-encoded, as the clients send it)."""
        from urllib.parse import urlencode

        return self.call("GET", f"{resource}?{urlencode({'filter': query, **params})}")


def _json(body: Any) -> str:
    import json

    return json.dumps(body)


def _verified_domain(tenant: Tenant, domain: str) -> SsoDomain:
    provider = IdentityProvider.objects.create(tenant=tenant, name="IdP", protocol="oidc")
    return SsoDomain.objects.create(
        tenant=tenant,
        identity_provider=provider,
        domain=domain,
        verification_token="t-" + domain,
        verified_at=timezone.now(),
    )


def _client(tenant: Tenant) -> ScimClient:
    _token, plaintext = scim_token_create(tenant=tenant, name="okta", expires_at=None, actor=None)
    client = ScimClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.plaintext = plaintext  # type: ignore[attr-defined]
    return client


@pytest.fixture
def domain_a(tenant_a: Tenant) -> SsoDomain:
    """acme.example, verified by tenant A."""
    return _verified_domain(tenant_a, "acme.example")


@pytest.fixture
def domain_b(tenant_b: Tenant) -> SsoDomain:
    """globex.example, verified by tenant B."""
    return _verified_domain(tenant_b, "globex.example")


@pytest.fixture
def mappings_a(tenant_a: Tenant) -> None:
    """Tenant A maps "Hub Admins" to admin and "Hub Viewers" to viewer."""
    RoleMapping.objects.create(tenant=tenant_a, group="Hub Admins", role=Role.ADMIN, position=0)
    RoleMapping.objects.create(tenant=tenant_a, group="Hub Viewers", role=Role.VIEWER, position=1)


@pytest.fixture
def scim_a(tenant_a: Tenant, domain_a: SsoDomain, mappings_a: None) -> ScimClient:
    """Tenant A's IdP, through its SCIM token."""
    return _client(tenant_a)


@pytest.fixture
def scim_a_second(scim_a: ScimClient, tenant_a: Tenant) -> ScimClient:
    """A second SCIM token of tenant A (another IdP app): its own rate limit, the same tenant."""
    return _client(tenant_a)


@pytest.fixture
def scim_b(tenant_b: Tenant, domain_b: SsoDomain) -> ScimClient:
    """Tenant B's IdP: must never see or change tenant A's users and groups."""
    return _client(tenant_b)


@pytest.fixture
def new_user() -> Any:
    """A SCIM User body for tenant A's domain (Okta's create shape), with a userName to fill in."""

    def make(user_name: str = "ann@acme.example", **extra: Any) -> dict[str, Any]:
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"primary": True, "value": user_name, "type": "work"}],
            "displayName": "Ann Lee",
            "externalId": "ext-" + user_name,
            "active": True,
        }
        body.update(extra)
        return body

    return make
