"""A SCIM deactivation logs the user out of the open console (issue 19), in a real browser.

A viewer of tenant A provisioned by A's IdP has the console open; the IdP deactivates them with Okta's PATCH
(`{"op":"replace","value":{"active":false}}`); the next page they open is the sign-in page.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.accounts.models import IdentityProvider, RoleMapping, ScimUser, SsoDomain
from apps.accounts.services.scim import scim_token_create
from apps.tenants.models import Role, Tenant

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SCIM = "application/scim+json"


def _scim(tenant: Tenant) -> Client:
    """Tenant A's IdP: a verified domain, "Hub Viewers" mapped to viewer, and a SCIM token."""
    provider = IdentityProvider.objects.create(tenant=tenant, name="Okta", protocol="oidc")
    SsoDomain.objects.create(
        tenant=tenant, identity_provider=provider, domain="acme.example", verification_token="t",
        verified_at=timezone.now(),
    )  # fmt: skip
    RoleMapping.objects.create(tenant=tenant, group="Hub Viewers", role=Role.VIEWER)
    _token, plaintext = scim_token_create(tenant=tenant, name="okta", expires_at=None, actor=None)
    return Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}", HTTP_ACCEPT=SCIM)


def test_scim_deactivation_signs_the_open_console_out(
    live_server: LiveServer, page: Page, tenant_a: Tenant
) -> None:
    idp = _scim(tenant_a)
    user = {"userName": "vera@acme.example", "emails": [{"value": "vera@acme.example", "primary": True}]}
    user_id = idp.post("/scim/v2/Users", json.dumps(user), content_type=SCIM).json()["id"]
    group = {"displayName": "Hub Viewers", "members": [{"value": user_id}]}
    assert idp.post("/scim/v2/Groups", json.dumps(group), content_type=SCIM).status_code == 201

    session = Client()
    session.force_login(ScimUser.objects.get(scim_id=user_id).user)
    base = live_server.url
    page.context.add_cookies(
        [{"name": "sessionid", "value": session.cookies["sessionid"].value, "url": base}]
    )
    page.goto(f"{base}/t/tenant-a/")
    expect(page).to_have_url(f"{base}/t/tenant-a/")

    deactivate = {"Operations": [{"op": "replace", "value": {"active": False}}]}
    patched = idp.patch(f"/scim/v2/Users/{user_id}", json.dumps(deactivate), content_type=SCIM)
    assert patched.status_code == 200 and patched.json()["active"] is False

    page.goto(f"{base}/t/tenant-a/")
    expect(page).to_have_url(f"{base}/accounts/login/?next=/t/tenant-a/")
