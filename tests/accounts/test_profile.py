"""Per-user language and time zone, Django's set_language, password change."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from apps.accounts import services
from apps.core.errors import ValidationFailed
from tests.fixtures.auth import PASSWORD

pytestmark = pytest.mark.django_db
PROFILE = reverse("accounts:profile")


def test_profile_needs_sign_in(client: Client) -> None:
    response = client.get(PROFILE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_switch_to_german_persists_and_the_console_answers_in_german(client: Client, bob: Any) -> None:
    client.force_login(bob)
    assert client.get(PROFILE)["Content-Language"] == "en"
    response = client.post(PROFILE, {"language": "de", "time_zone": "Europe/Berlin"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "de"
    bob.refresh_from_db()
    assert (bob.language, bob.time_zone) == ("de", "Europe/Berlin")
    page = client.get(PROFILE, headers={"Accept-Language": "fr"})
    assert page["Content-Language"] == "de"
    assert page.context["LANGUAGE_CODE"] == "de"
    assert '<html lang="de">' in page.content.decode()
    # A new session (another browser) gets the user's language, not the browser's.
    other = Client()
    other.force_login(bob)
    assert other.get(PROFILE, headers={"Accept-Language": "ja"})["Content-Language"] == "de"


def test_user_time_zone_is_active_during_the_request(client: Client, bob: Any) -> None:
    services.user_update_preferences(user=bob, time_zone="Asia/Tokyo")
    client.force_login(bob)
    response = client.get(PROFILE)
    assert response.context["TIME_ZONE"] == "Asia/Tokyo"
    # Deactivated afterwards: nothing leaks into the next request or test.
    assert timezone.get_current_timezone_name() == settings.TIME_ZONE


def test_anonymous_visitors_get_the_browser_language(client: Client) -> None:
    response = client.get(reverse("accounts:login"), headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert response["Content-Language"] == "de"
    assert client.get(reverse("accounts:login"))["Content-Language"] == "en"


@pytest.mark.parametrize(
    "data",
    [
        {"language": "xx", "time_zone": "UTC"},
        {"language": "de", "time_zone": "Mars/Olympus"},
        {"language": "", "time_zone": ""},
        {},
    ],
)
def test_bad_preferences_are_field_errors(client: Client, bob: Any, data: dict[str, str]) -> None:
    client.force_login(bob)
    response = client.post(PROFILE, data)
    assert response.status_code == 400
    assert response.context["form"].errors
    bob.refresh_from_db()
    assert (bob.language, bob.time_zone) == ("en", "UTC")


def test_preferences_service_refuses_unknown_values(bob: Any) -> None:
    with pytest.raises(ValidationFailed) as info:
        services.user_update_preferences(user=bob, language="klingon", time_zone="Nowhere/City")
    assert set(info.value.errors) == {"language", "time_zone"}
    bob.refresh_from_db()
    assert (bob.language, bob.time_zone) == ("en", "UTC")


def test_set_language_view_saves_the_choice_of_a_signed_in_user(client: Client, bob: Any) -> None:
    client.force_login(bob)
    response = client.post(reverse("set_language"), {"language": "fr", "next": PROFILE})
    assert response.status_code == 302
    assert response["Location"] == PROFILE
    bob.refresh_from_db()
    assert bob.language == "fr"
    assert client.get(PROFILE)["Content-Language"] == "fr"


def test_set_language_view_still_works_for_visitors(client: Client) -> None:
    response = client.post(reverse("set_language"), {"language": "es", "next": "/accounts/login/"})
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "es"
    assert client.get(reverse("accounts:login"))["Content-Language"] == "es"


def test_set_language_ignores_unknown_languages(client: Client, bob: Any) -> None:
    client.force_login(bob)
    client.post(reverse("set_language"), {"language": "zz", "next": PROFILE})
    bob.refresh_from_db()
    assert bob.language == "en"


def test_password_change(client: Client, bob: Any) -> None:
    client.force_login(bob)
    url = reverse("accounts:password-change")
    assert client.get(url).status_code == 200
    new = "a-much-Longer-passphrase-7"
    response = client.post(url, {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert response.status_code == 302
    assert response["Location"] == PROFILE
    bob.refresh_from_db()
    assert bob.check_password(new)
    assert client.get(PROFILE).status_code == 200  # still signed in


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"old_password": "wrong", "new_password1": "x-Long-pass-123", "new_password2": "x-Long-pass-123"},
            "old_password",
        ),
        ({"old_password": PASSWORD, "new_password1": "short", "new_password2": "short"}, "new_password2"),
        (
            {"old_password": PASSWORD, "new_password1": "x-Long-pass-123", "new_password2": "other-pass-123"},
            "new_password2",
        ),
    ],
)
def test_password_change_errors(client: Client, bob: Any, data: dict[str, str], field: str) -> None:
    client.force_login(bob)
    response = client.post(reverse("accounts:password-change"), data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    bob.refresh_from_db()
    assert bob.check_password(PASSWORD)


def test_language_is_reset_between_tests() -> None:
    assert translation.get_language() in {"en", "en-us"}
