"""Sign-in and sign-out: success, failure, no enumeration, safe `next`, CSRF, malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.fixtures.auth import PASSWORD, enroll

pytestmark = pytest.mark.django_db
LOGIN = reverse("accounts:login")


def _session_user_id(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def test_login_page_renders_with_csrf_token(client: Client) -> None:
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b'name="username"' in response.content
    assert b'name="step" value="identify"' in response.content  # the first step asks who, not the password
    password_step = client.get(LOGIN + "?step=password")
    assert b'autocomplete="current-password"' in password_step.content


def test_login_success_for_a_viewer_goes_to_console(client: Client, bob: Any) -> None:
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("console:home")
    assert _session_user_id(client) == str(bob.pk)


def test_login_failure_shows_error_and_does_not_sign_in(client: Client, bob: Any) -> None:
    response = client.post(LOGIN, {"username": "bob", "password": "wrong-password"})
    assert response.status_code == 400
    assert "Please enter a correct username and password" in response.content.decode()
    assert _session_user_id(client) is None


def test_inactive_user_cannot_sign_in_and_gets_the_same_message(client: Client, bob: Any) -> None:
    bob.is_active = False
    bob.save()
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    assert response.status_code == 400
    assert "Please enter a correct username and password" in response.content.decode()
    assert _session_user_id(client) is None


def _form_part(response: Any) -> str:
    """The page without the CSRF token, which differs per request."""
    html = response.content.decode()
    start = html.index("<form")
    end = html.index("</form>")
    chunk = html[start:end]
    import re

    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", chunk)


def test_unknown_user_and_wrong_password_get_the_same_answer(client: Client, bob: Any) -> None:
    unknown = client.post(LOGIN, {"username": "nobody-here", "password": "wrong-password"})
    known = client.post(LOGIN, {"username": "bob", "password": "wrong-password"})
    assert unknown.status_code == known.status_code == 400
    assert _form_part(unknown).replace("nobody-here", "X") == _form_part(known).replace("bob", "X")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"username": "", "password": ""},
        {"username": "bob"},
        {"username": "x" * 500, "password": "p"},
        {"username": ["a", "b"], "password": "p"},
    ],
)
def test_malformed_login_gives_field_errors_not_500(client: Client, bob: Any, data: dict[str, Any]) -> None:
    response = client.post(LOGIN, data)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert _session_user_id(client) is None


def test_next_on_this_site_is_followed(client: Client, bob: Any) -> None:
    response = client.post(LOGIN + "?next=/accounts/profile/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"


@pytest.mark.parametrize(
    "evil",
    [
        "https://evil.example.com/",
        "//evil.example.com/path",
        "http:///evil.example.com",
        "javascript:alert(1)",
        "\\\\evil.example.com",
        "https://testserver.evil.example.com/",
    ],
)
def test_open_redirect_in_next_is_refused(client: Client, bob: Any, evil: str) -> None:
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD, "next": evil})
    assert response.status_code == 302
    assert response["Location"] == reverse("console:home")


def test_signed_in_user_visiting_login_with_evil_next_stays_here(client: Client, bob: Any) -> None:
    client.force_login(bob)
    response = client.get(LOGIN + "?next=https://evil.example.com/")
    assert response.status_code == 302
    assert response["Location"] == reverse("console:home")


def test_login_form_enforces_csrf(bob: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    assert response.status_code == 403
    assert client.session.get("_auth_user_id") is None


def test_logout_needs_post(client: Client, bob: Any) -> None:
    client.force_login(bob)
    assert client.get(reverse("accounts:logout")).status_code == 405
    assert _session_user_id(client) == str(bob.pk)
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert response["Location"] == LOGIN
    assert _session_user_id(client) is None


def test_user_with_device_goes_to_otp_step_after_password(client: Client, bob: Any) -> None:
    enroll(bob)
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD, "next": "/accounts/profile/"})
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:otp-verify") + "?next=%2Faccounts%2Fprofile%2F"
    # Signed in with the first factor only: everything else sends back to the OTP step.
    profile = client.get("/accounts/profile/")
    assert profile.status_code == 302
    assert profile["Location"].startswith(reverse("accounts:otp-verify"))


def test_password_reset_does_not_reveal_accounts(client: Client, bob: Any, mailoutbox: list[Any]) -> None:
    url = reverse("accounts:password-reset")
    known = client.post(url, {"email": "bob@example.com"})
    unknown = client.post(url, {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == reverse("accounts:password-reset-done")
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["bob@example.com"]
    assert "/accounts/password/reset/" in mailoutbox[0].body


def test_password_reset_link_sets_a_new_password(client: Client, bob: Any, mailoutbox: list[Any]) -> None:
    client.post(reverse("accounts:password-reset"), {"email": "bob@example.com"})
    link = next(line for line in mailoutbox[0].body.splitlines() if "/accounts/password/reset/" in line)
    path = link.replace("http://testserver", "")
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200
    assert form_page.context["validlink"] is True
    new = "another-Long-passphrase-42"
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    assert done["Location"] == reverse("accounts:password-reset-complete")
    bob.refresh_from_db()
    assert bob.check_password(new)


def test_password_reset_with_malformed_email_is_a_field_error(client: Client) -> None:
    response = client.post(reverse("accounts:password-reset"), {"email": "not-an-email"})
    assert response.status_code == 200
    assert "email" in response.context["form"].errors
