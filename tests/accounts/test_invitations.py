"""Accepting an invitation: as the invited user, as a new user who signs up, as the wrong user, too late."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.tenants.models import Invitation, Membership, Role, Tenant
from apps.tenants.services import invitation_create, invitation_revoke, invitation_token
from tests.factories import UserFactory
from tests.fixtures.auth import PASSWORD

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-fresh-Passphrase-2026"


def _invite(tenant: Tenant, inviter: Any, email: str, role: str = Role.VIEWER) -> tuple[Invitation, str]:
    invitation = invitation_create(
        tenant=tenant, email=email, role=role, invited_by=inviter, base_url="http://testserver/"
    )
    return invitation, reverse("accounts:invitation-accept", args=[invitation_token(invitation)])


def test_signed_in_invited_user_accepts_and_lands_in_the_tenant(
    client: Client, alice: Any, charlie: Any, tenant_a: Tenant
) -> None:
    invitation, url = _invite(tenant_a, alice, "charlie@example.com")
    client.force_login(charlie)
    page = client.get(url)
    assert page.status_code == 200
    assert "Tenant A" in page.content.decode()
    assert not Membership.objects.filter(tenant=tenant_a, user=charlie).exists()  # GET changes nothing
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug})
    assert Membership.objects.get(tenant=tenant_a, user=charlie).role == Role.VIEWER
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    assert client.get(response["Location"]).status_code == 200
    # Used: the link is dead now.
    assert client.get(url).status_code == 404


def test_existing_account_signs_in_first_then_comes_back(
    client: Client, alice: Any, charlie: Any, tenant_a: Tenant
) -> None:
    _, url = _invite(tenant_a, alice, "Charlie@Example.com")
    response = client.get(url)
    assert response.status_code == 302
    login_url = response["Location"]
    assert login_url.startswith(reverse("accounts:login"))
    login = client.post(login_url, {"username": "charlie", "password": PASSWORD})
    assert login.status_code == 302
    assert login["Location"] == url
    assert client.post(url).status_code == 302
    assert Membership.objects.filter(tenant=tenant_a, user=charlie).exists()


def test_new_user_signs_up_with_the_invited_email(client: Client, alice: Any, tenant_a: Tenant) -> None:
    invitation, url = _invite(tenant_a, alice, "dora@example.com", role=Role.CONNECTOR_MANAGER)
    page = client.get(url)
    assert page.status_code == 200
    assert "dora@example.com" in page.content.decode()
    response = client.post(
        url,
        {
            "username": "dora",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "email": "mallory@evil.example.com",  # ignored: the e-mail comes from the invitation
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug})
    dora = get_user_model().objects.get(username="dora")
    assert dora.email == "dora@example.com"
    assert dora.check_password(NEW_PASSWORD)
    assert Membership.objects.get(tenant=tenant_a, user=dora).role == Role.CONNECTOR_MANAGER
    assert client.session["_auth_user_id"] == str(dora.pk)
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    assert client.get(response["Location"]).status_code == 200


def test_new_admin_signs_up_and_must_enroll(client: Client, alice: Any, tenant_a: Tenant) -> None:
    _, url = _invite(tenant_a, alice, "erin@example.com", role=Role.ADMIN)
    response = client.post(url, {"username": "erin", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert follow.status_code == 302
    assert follow["Location"].startswith(reverse("accounts:twofactor-enroll"))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"username": "dora", "password1": NEW_PASSWORD, "password2": "different-Pass-99"}, "password2"),
        ({"username": "dora", "password1": "short", "password2": "short"}, "password1"),
        ({"username": "dora", "password1": "12345678901234", "password2": "12345678901234"}, "password1"),
        ({"username": "dora", "password1": "dora@example.com", "password2": "dora@example.com"}, "password1"),
        ({"username": "bad name!", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "username"),
        ({"username": "BOB", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "username"),
        ({"username": "", "password1": "", "password2": ""}, "username"),
        ({}, "password1"),
    ],
)
def test_sign_up_errors_are_field_errors(
    client: Client, alice: Any, bob: Any, tenant_a: Tenant, data: dict[str, str], field: str
) -> None:
    invitation, url = _invite(tenant_a, alice, "dora@example.com")
    response = client.post(url, data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not get_user_model().objects.filter(email="dora@example.com").exists()
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_wrong_signed_in_user_gets_a_clear_message(
    client: Client, alice: Any, bob: Any, tenant_a: Tenant
) -> None:
    invitation, url = _invite(tenant_a, alice, "dora@example.com")
    client.force_login(bob)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 403
        assert "different e-mail address" in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.accepted_at is None
    assert Membership.objects.filter(tenant=tenant_a, user=bob).get().role == Role.VIEWER


def test_expired_invitation_is_a_friendly_404(client: Client, alice: Any, tenant_a: Tenant) -> None:
    invitation, url = _invite(tenant_a, alice, "dora@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    response = client.get(url)
    assert response.status_code == 404
    assert "invalid, has expired or was already used" in response.content.decode()
    post = client.post(url, {"username": "dora", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert post.status_code == 404
    assert not get_user_model().objects.filter(username="dora").exists()


def test_revoked_and_forged_links_are_404(client: Client, alice: Any, tenant_a: Tenant) -> None:
    invitation, url = _invite(tenant_a, alice, "dora@example.com")
    invitation_revoke(invitation=invitation)
    assert client.get(url).status_code == 404
    for token in ["garbage", "x" * 300, url.rstrip("/").split("/")[-1][:-2] + "zz"]:
        assert client.get(reverse("accounts:invitation-accept", args=[token])).status_code == 404


def test_sign_up_forms_need_csrf(alice: Any, tenant_a: Tenant) -> None:
    _, url = _invite(tenant_a, alice, "dora@example.com")
    client = Client(enforce_csrf_checks=True)
    response = client.post(url, {"username": "dora", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 403
    assert not get_user_model().objects.filter(username="dora").exists()


def test_existing_email_with_different_case_must_sign_in(
    client: Client, alice: Any, tenant_a: Tenant
) -> None:
    UserFactory.create(username="frank", email="frank@example.com")
    _, url = _invite(tenant_a, alice, "FRANK@example.com")
    response = client.post(url, {"username": "frank2", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))
    assert not get_user_model().objects.filter(username="frank2").exists()
