"""The SCIM console page: tokens shown once, listed and revoked; base URL; provisioned users and groups."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.accounts.models import ScimToken
from apps.audit.models import AuditEvent
from apps.core.confirm import CONFIRM_FIELD, CONFIRM_VALUE
from apps.core.context import tenant_context
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db
PAGE = "/t/tenant-a/sso/scim/"


@pytest.fixture
def admin_client(alice: Any, domain_a: Any) -> Client:
    client = Client()
    login_verified(client, alice)
    return client


def test_empty_states_base_url_and_navigation(admin_client: Client) -> None:
    page = admin_client.get(PAGE)
    assert page.status_code == 200
    text = page.content.decode()
    assert "http://testserver/scim/v2" in text
    assert "No SCIM tokens yet." in text and "No users provisioned yet." in text
    assert 'href="/t/tenant-a/sso/scim/"' in admin_client.get("/t/tenant-a/").content.decode()
    groups = admin_client.get(PAGE + "groups/")
    assert groups.status_code == 200 and "No groups provisioned yet." in groups.content.decode()


def test_create_shows_the_token_once_then_lists_and_revokes(admin_client: Client, tenant_a: Any) -> None:
    created = admin_client.post(PAGE, {"name": "Okta", "expires": "365"})
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    token = ScimToken.objects.get(tenant=tenant_a)
    text = created.content.decode()
    plaintext = text.split('id="token-secret" type="text" readonly value="')[1].split('"')[0]
    assert plaintext.startswith(token.prefix + "_") and len(plaintext) > 40
    listing = admin_client.get(PAGE).content.decode()
    assert token.prefix in listing and plaintext not in listing and "Never used" in listing
    # the token works, then is revoked through the confirmation
    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert api.get("/scim/v2/Users").status_code == 200
    revoke = f"{PAGE}tokens/{token.pk}/revoke/"
    assert admin_client.get(revoke).status_code == 200  # the confirmation page
    assert admin_client.post(revoke, {CONFIRM_FIELD: CONFIRM_VALUE}).status_code == 302
    assert api.get("/scim/v2/Users").status_code == 401
    with tenant_context(tenant_a):
        actions = set(
            AuditEvent.objects.filter(action__startswith="scim.token").values_list("action", flat=True)
        )
    assert actions == {"scim.token_created", "scim.token_revoked"}


def test_bad_form_is_400(admin_client: Client) -> None:
    assert admin_client.post(PAGE, {"name": "", "expires": "365"}).status_code == 400
    assert admin_client.post(PAGE, {"name": "x", "expires": "forever"}).status_code == 400


def test_provisioned_users_and_groups_are_listed_and_paginated(
    admin_client: Client, tenant_a: Any, mappings_a: None
) -> None:
    from apps.accounts.scim.protocol import GroupData, UserData
    from apps.accounts.services.scim import scim_group_create, scim_user_create

    for n in range(30):
        scim_user_create(
            tenant=tenant_a,
            data=UserData(user_name=f"u{n:02}@acme.example", email=f"u{n:02}@acme.example"),
            actor=None,
        )
    scim_group_create(tenant=tenant_a, data=GroupData(display_name="Hub Viewers"), actor=None)
    first = admin_client.get(PAGE).content.decode()
    assert "u00@acme.example" in first and "u29@acme.example" not in first and "Page 1 of 2" in first
    assert "u29@acme.example" in admin_client.get(PAGE + "?page=2").content.decode()
    assert "Hub Viewers" in admin_client.get(PAGE + "groups/").content.decode()


def test_non_admin_is_refused(bob: Any, domain_a: Any) -> None:
    client = Client()
    login_verified(client, bob)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"name": "x", "expires": "365"}).status_code == 403
    assert not ScimToken.objects.exists()


def test_other_tenant_admin_gets_404(tenant_a: Any, charlie: Any) -> None:
    token = ScimToken.objects.create(tenant=tenant_a, name="a", prefix="hubs_x", token_hash="1" * 64)
    client = Client()
    login_verified(client, charlie)
    for path in (PAGE, PAGE + "groups/", f"{PAGE}tokens/{token.pk}/revoke/"):
        assert client.get(path).status_code == 404
        assert client.post(path).status_code == 404
    assert ScimToken.objects.get(pk=token.pk).revoked_at is None
