"""The console page for management API tokens: admins list, create (secret shown once) and revoke."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.core.confirm import CONFIRMED
from apps.tenants.models import ManagementToken, Tenant
from apps.tenants.services import management_token_hash
from tests.fixtures.auth import issue_token, session_client, token_client

pytestmark = pytest.mark.django_db

PAGE = "/t/tenant-a/api-tokens/"


@pytest.fixture
def alice_console(alice: Any) -> Client:
    client = Client()
    client.cookies = session_client(alice).cookies
    return client


def test_empty_state(alice_console: Client) -> None:
    response = alice_console.get(PAGE)
    assert response.status_code == 200
    assert b"No API tokens yet." in response.content


def test_create_shows_the_secret_once_and_stores_only_its_hash(
    alice_console: Client, tenant_a: Tenant
) -> None:
    response = alice_console.post(PAGE, {"name": "provisioning", "expires": "30"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    match = re.search(rb'value="(hubm_[A-Za-z0-9_-]+)"', response.content)
    assert match is not None
    plaintext = match.group(1).decode()
    token = ManagementToken.objects.get()
    assert token.name == "provisioning"
    assert token.user.username == "alice"
    assert token.expires_at is not None
    assert token.token_hash == management_token_hash(plaintext)
    assert plaintext not in str(ManagementToken.objects.filter(pk=token.pk).values().get())

    listing = alice_console.get(PAGE)
    assert token.prefix.encode() in listing.content
    assert plaintext.encode() not in listing.content
    assert token_client(plaintext).get("/api/v1/tenants/tenant-a/members/").status_code == 200


def test_create_with_bad_input_shows_field_errors(alice_console: Client) -> None:
    response = alice_console.post(PAGE, {"name": "", "expires": "forever"})
    assert response.status_code == 400
    assert b'class="error"' in response.content
    assert not ManagementToken.objects.exists()


def test_revoke(alice_console: Client, tenant_a: Tenant, alice: Any) -> None:
    plaintext = issue_token(tenant_a, alice)
    token = ManagementToken.objects.get()
    response = alice_console.post(f"{PAGE}{token.pk}/revoke/", CONFIRMED)
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token_client(plaintext).get("/api/v1/tenants/tenant-a/").status_code == 401
    assert b"Revoked" in alice_console.get(PAGE).content


def test_list_is_paginated(alice_console: Client, tenant_a: Tenant, alice: Any) -> None:
    for _n in range(27):
        issue_token(tenant_a, alice)
    response = alice_console.get(PAGE)
    assert response.content.count(b"hubm_") == 25
    assert b'rel="next"' in response.content


def test_viewer_gets_403(bob: Any) -> None:
    client = Client()
    client.force_login(bob)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"name": "x", "expires": "30"}).status_code == 403


def test_charlie_gets_404(charlie: Any, tenant_a: Tenant, alice: Any) -> None:
    issue_token(tenant_a, alice)
    token = ManagementToken.objects.get()
    client = Client()
    client.cookies = session_client(charlie).cookies
    assert client.get(PAGE).status_code == 404
    assert client.post(f"{PAGE}{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_tokens_of_another_tenant_cannot_be_revoked_here(
    alice_console: Client, tenant_b: Tenant, charlie: Any
) -> None:
    issue_token(tenant_b, charlie)
    token = ManagementToken.objects.get()
    assert alice_console.post(f"{PAGE}{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
