"""Lockout after repeated failures, per account and per client address, and the admin unlock."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts import selectors, services
from apps.tenants.models import Membership, Tenant
from tests.fixtures.auth import PASSWORD, login_verified

pytestmark = pytest.mark.django_db
LOGIN = reverse("accounts:login")
LOCKED_TEXT = "Too many failed sign-in attempts"


def _fail(client: Client, username: str, times: int, ip: str = "127.0.0.1") -> list[int]:
    return [
        client.post(LOGIN, {"username": username, "password": "wrong"}, REMOTE_ADDR=ip).status_code
        for _ in range(times)
    ]


def test_account_locks_after_five_failures_even_with_the_right_password(client: Client, bob: Any) -> None:
    assert _fail(client, "bob", 4) == [400] * 4
    assert selectors.login_failures(username="bob") == {"account": 4}
    fifth = client.post(LOGIN, {"username": "bob", "password": "wrong"})
    assert fifth.status_code == 429
    assert LOCKED_TEXT in fifth.content.decode()
    right = client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    assert right.status_code == 429
    assert LOCKED_TEXT in right.content.decode()
    assert client.session.get("_auth_user_id") is None


def test_account_lock_holds_from_another_address_and_ignores_case(client: Client, bob: Any) -> None:
    _fail(client, "BOB", 5, ip="10.0.0.1")
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD}, REMOTE_ADDR="10.0.0.2")
    assert response.status_code == 429
    assert selectors.user_is_locked(user=bob) is True


def test_lock_of_one_account_leaves_others_alone(client: Client, alice: Any, bob: Any) -> None:
    _fail(client, "bob", 5)
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert selectors.user_is_locked(user=alice) is False


def test_unknown_accounts_lock_with_the_same_message(client: Client, bob: Any) -> None:
    unknown = _fail(client, "ghost", 5)
    known = _fail(client, "bob", 5, ip="10.0.0.9")
    assert unknown == known == [400, 400, 400, 400, 429]
    a = client.post(LOGIN, {"username": "ghost", "password": "x"}, REMOTE_ADDR="10.1.1.1")
    b = client.post(LOGIN, {"username": "bob", "password": "x"}, REMOTE_ADDR="10.1.1.2")
    assert a.status_code == b.status_code == 429
    assert a.context["form"].non_field_errors() == b.context["form"].non_field_errors()


def test_address_locks_after_twenty_failures_across_accounts(client: Client, bob: Any) -> None:
    for i in range(20):
        client.post(LOGIN, {"username": f"guess{i}", "password": "wrong"}, REMOTE_ADDR="192.0.2.7")
    assert selectors.login_failures(ip="192.0.2.7") == {"ip": 20}
    blocked = client.post(LOGIN, {"username": "bob", "password": PASSWORD}, REMOTE_ADDR="192.0.2.7")
    assert blocked.status_code == 429
    assert LOCKED_TEXT in blocked.content.decode()
    # bob's account is not locked: from another address he signs in.
    elsewhere = client.post(LOGIN, {"username": "bob", "password": PASSWORD}, REMOTE_ADDR="192.0.2.8")
    assert elsewhere.status_code == 302


def test_success_resets_the_account_counter(client: Client, bob: Any) -> None:
    _fail(client, "bob", 4)
    assert client.post(LOGIN, {"username": "bob", "password": PASSWORD}).status_code == 302
    assert selectors.login_failures(username="bob", ip="127.0.0.1") == {"account": 0, "ip": 4}


def test_lockout_limits_come_from_settings(client: Client, bob: Any, settings: Any) -> None:
    settings.LOGIN_LOCKOUT_ACCOUNT_LIMIT = 2
    assert _fail(client, "bob", 2) == [400, 429]


def test_login_unlock_service(client: Client, bob: Any) -> None:
    _fail(client, "bob", 5)
    assert services.login_unlock(user=bob) is True
    assert selectors.user_is_locked(user=bob) is False
    assert services.login_unlock(user=bob) is False
    assert client.post(LOGIN, {"username": "bob", "password": PASSWORD}).status_code == 302


def _unlock_url(tenant: Tenant, user: Any) -> str:
    membership = Membership.objects.get(tenant=tenant, user=user)
    return reverse("accounts:member-unlock", kwargs={"tenant_slug": tenant.slug, "pk": membership.pk})


def test_admin_unlocks_a_member(client: Client, alice: Any, bob: Any, tenant_a: Tenant) -> None:
    _fail(Client(), "bob", 5)
    login_verified(client, alice)
    membership = Membership.objects.get(tenant=tenant_a, user=bob)
    edit = client.get(
        reverse("tenants:member-edit", kwargs={"tenant_slug": tenant_a.slug, "pk": membership.pk})
    )
    assert edit.status_code == 200
    assert "is locked out" in edit.content.decode()
    assert _unlock_url(tenant_a, bob).encode() in edit.content
    response = client.post(_unlock_url(tenant_a, bob))
    assert response.status_code == 302
    assert selectors.user_is_locked(user=bob) is False
    assert Client().post(LOGIN, {"username": "bob", "password": PASSWORD}).status_code == 302


def test_unlock_is_post_only(client: Client, alice: Any, bob: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    assert client.get(_unlock_url(tenant_a, bob)).status_code == 405


def test_viewer_cannot_unlock(client: Client, alice: Any, bob: Any, tenant_a: Tenant) -> None:
    _fail(Client(), "alice", 5)
    client.force_login(bob)
    assert client.post(_unlock_url(tenant_a, alice)).status_code == 403
    assert selectors.user_is_locked(user=alice) is True


def test_charlie_cannot_unlock_a_member_of_a(
    client: Client, charlie: Any, bob: Any, tenant_a: Tenant
) -> None:
    _fail(Client(), "bob", 5)
    client.force_login(charlie)
    assert client.post(_unlock_url(tenant_a, bob)).status_code == 404
    assert selectors.user_is_locked(user=bob) is True


def test_admin_cannot_unlock_through_another_tenants_membership(
    client: Client, alice: Any, charlie: Any, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    _fail(Client(), "charlie", 5)
    login_verified(client, alice)
    charlie_membership = Membership.objects.get(tenant=tenant_b, user=charlie)
    url = reverse(
        "accounts:member-unlock", kwargs={"tenant_slug": tenant_a.slug, "pk": charlie_membership.pk}
    )
    assert client.post(url).status_code == 404
    assert selectors.user_is_locked(user=charlie) is True


def test_operator_can_unlock(client: Client, operator: Any, bob: Any, tenant_a: Tenant) -> None:
    _fail(Client(), "bob", 5)
    login_verified(client, operator)
    assert client.post(_unlock_url(tenant_a, bob)).status_code == 302
    assert selectors.user_is_locked(user=bob) is False


def test_wrong_otp_codes_count_towards_the_lock(client: Client, bob: Any, no_otp_throttle: None) -> None:
    from tests.fixtures.auth import enroll

    enroll(bob)
    client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    verify = reverse("accounts:otp-verify")
    statuses = [client.post(verify, {"token": "nope42"}).status_code for _ in range(4)]
    assert statuses == [400] * 4
    last = client.post(verify, {"token": "nope42"})
    assert last.status_code == 302
    assert last["Location"] == LOGIN
    assert client.session.get("_auth_user_id") is None
    assert selectors.user_is_locked(user=bob) is True
