"""The lockout counts each client, behind trusted proxies too, and a client cannot choose its address.

Issue 14: behind the ingress every request came from the ingress's address (REMOTE_ADDR), so 20 bad
attempts by anyone locked every user out; and the Django admin's sign-in bypassed the lockout entirely.
These tests send the requests a proxy (or an attacker) would send, against the real lockout counters in Redis.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts import selectors
from apps.observability.access import client_address
from tests.fixtures.auth import PASSWORD, enroll, next_code

pytestmark = pytest.mark.django_db
LOGIN = reverse("accounts:login")
ADMIN_LOGIN = "/admin/login/"
INGRESS = "10.0.0.5"
LOCKED_TEXT = "Too many failed sign-in attempts"


def _fail(client: Client, times: int, **meta: str) -> list[int]:
    return [
        client.post(LOGIN, {"username": f"guess{i}", "password": "wrong"}, **meta).status_code  # type: ignore[arg-type]
        for i in range(times)
    ]


@pytest.mark.parametrize("trust", [{"HUB_TRUSTED_PROXY_COUNT": 1}, {"HUB_TRUSTED_PROXIES": ["10.0.0.0/8"]}])
def test_behind_a_trusted_proxy_two_clients_are_counted_apart(
    client: Client, bob: Any, settings: Any, trust: dict[str, Any]
) -> None:
    for name, value in trust.items():
        setattr(settings, name, value)
    # The attacker sits behind the ingress and also writes a leftmost X-Forwarded-For of their own choice.
    attacker = {"REMOTE_ADDR": INGRESS, "HTTP_X_FORWARDED_FOR": "198.51.100.9, 203.0.113.66"}
    assert _fail(client, 20, **attacker)[-1] == 429
    assert selectors.login_failures(ip="203.0.113.66") == {"ip": 20}
    assert selectors.login_failures(ip="198.51.100.9") == {"ip": 0}, "the spoofed entry never counts"
    assert selectors.login_failures(ip=INGRESS) == {"ip": 0}, "the ingress is not everyone"
    # bob comes through the same ingress from his own address: not locked out by the attacker.
    response = client.post(
        LOGIN,
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR=INGRESS,
        HTTP_X_FORWARDED_FOR="192.0.2.10",
    )
    assert response.status_code == 302
    # The attacker is still refused, even with the right password of an account.
    blocked = Client().post(
        LOGIN,
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR=INGRESS,
        HTTP_X_FORWARDED_FOR="203.0.113.66",
    )
    assert blocked.status_code == 429


def test_without_a_trusted_proxy_a_spoofed_forwarded_for_is_ignored(client: Client, bob: Any) -> None:
    # Default settings trust nobody: a client changing X-Forwarded-For each time is still one address.
    for i in range(20):
        client.post(
            LOGIN,
            {"username": f"guess{i}", "password": "wrong"},
            REMOTE_ADDR="203.0.113.7",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        )
    assert selectors.login_failures(ip="203.0.113.7") == {"ip": 20}
    response = client.post(
        LOGIN,
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR="203.0.113.7",
        HTTP_X_FORWARDED_FOR="192.0.2.200",
    )
    assert response.status_code == 429
    assert LOCKED_TEXT in response.content.decode()


def test_an_untrusted_peer_cannot_pass_as_a_trusted_proxy(settings: Any) -> None:
    settings.HUB_TRUSTED_PROXIES = ["10.0.0.0/8"]
    # A client reaching the pod directly (not from 10/8) names an address: its own address counts.
    assert (
        client_address({"REMOTE_ADDR": "203.0.113.7", "HTTP_X_FORWARDED_FOR": "192.0.2.1"}) == "203.0.113.7"
    )
    # Through two trusted hops, the first untrusted address from the right is the client.
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.7, 10.1.2.3"}
    assert client_address(meta) == "203.0.113.7"
    # Garbage written where a trusted proxy would have written the client: stop at the proxy.
    assert client_address({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "evil"}) == "10.0.0.5"
    assert client_address({"REMOTE_ADDR": "::ffff:203.0.113.7"}) == "203.0.113.7"
    assert client_address({}) == "unknown"


def _admin_attempt(
    client: Client, username: str, password: str, device: Any = None, ip: str = "203.0.113.50"
) -> Any:
    """One sign-in at /admin/ (password and, with `device`, a valid code in the same form)."""
    data = {"username": username, "password": password, "next": "/admin/"}
    if device is not None:
        data |= {"otp_device": device.persistent_id, "otp_token": next_code(device)}
    return client.post(ADMIN_LOGIN, data, REMOTE_ADDR=ip)


def test_twenty_bad_admin_logins_lock_the_admin_login_like_the_consoles(
    client: Client, operator: Any, no_otp_throttle: None
) -> None:
    operator.set_password(PASSWORD)
    operator.save()
    device = enroll(operator)
    for i in range(20):
        response = _admin_attempt(client, f"root{i}", "wrong")
        assert response.status_code == 200
        assert "_auth_user_id" not in client.session
    assert selectors.login_failures(ip="203.0.113.50") == {"ip": 20}
    # The right password and a valid code from the locked address: refused, nobody signed in.
    response = _admin_attempt(client, "operator", PASSWORD, device)
    assert response.status_code == 200
    assert LOCKED_TEXT in response.content.decode()
    assert "_auth_user_id" not in client.session
    # The console's sign-in shares the counter: locked there too.
    console = client.post(LOGIN, {"username": "operator", "password": PASSWORD}, REMOTE_ADDR="203.0.113.50")
    assert console.status_code == 429
    # From another address the operator still gets in (the account itself is not locked).
    other = Client()
    response = _admin_attempt(other, "operator", PASSWORD, device, ip="192.0.2.33")
    assert response.status_code == 302, response.context["form"].errors
    assert other.session["_auth_user_id"] == str(operator.pk)


def test_bad_admin_passwords_lock_the_account(client: Client, operator: Any, no_otp_throttle: None) -> None:
    operator.set_password(PASSWORD)
    operator.save()
    device = enroll(operator)
    for i in range(5):
        _admin_attempt(client, "operator", "wrong", ip=f"192.0.2.{i}")
    assert selectors.user_is_locked(user=operator)
    response = _admin_attempt(client, "operator", PASSWORD, device, ip="192.0.2.99")
    assert LOCKED_TEXT in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_metrics_allow_list_checks_the_client_behind_the_ingress(client: Client, settings: Any) -> None:
    """An allow-list of the cluster network must not admit the internet through the cluster's own ingress."""
    settings.HUB_METRICS_TOKEN = ""
    settings.HUB_METRICS_ALLOW = ["10.0.0.0/8"]
    settings.HUB_TRUSTED_PROXIES = ["10.0.0.0/8"]
    outsider = client.get("/metrics", REMOTE_ADDR=INGRESS, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.9")
    assert outsider.status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200  # Prometheus, scraping the pod
