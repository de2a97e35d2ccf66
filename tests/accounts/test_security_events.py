"""record_security_event: one structured line per sensitive action, with no secrets or personal data."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.services import record_security_event
from tests.fixtures.auth import PASSWORD, enroll, next_code

pytestmark = pytest.mark.django_db


def _events(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "apps.accounts.security"]


def test_login_success_and_failure_are_recorded_without_personal_data(
    client: Client, bob: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="apps.accounts.security")
    client.post(reverse("accounts:login"), {"username": "nobody", "password": "wrong-secret"})
    client.post(reverse("accounts:login"), {"username": "bob", "password": "wrong-secret"})
    client.post(reverse("accounts:login"), {"username": "bob", "password": PASSWORD})
    events = _events(caplog)
    assert [(e.action, e.outcome, e.user_id) for e in events] == [  # type: ignore[attr-defined]
        ("login", "failure", None),
        ("login", "failure", bob.pk),
        ("login", "success", bob.pk),
    ]
    for record in events:
        text = str(record.__dict__)
        assert "wrong-secret" not in text
        assert PASSWORD not in text
        assert "bob@example.com" not in text
        assert "127.0.0.1" not in text


def test_two_factor_actions_are_recorded(client: Client, bob: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apps.accounts.security")
    device = enroll(bob)
    client.post(reverse("accounts:login"), {"username": "bob", "password": PASSWORD})
    client.post(reverse("accounts:otp-verify"), {"token": next_code(device)})
    codes = client.post(reverse("accounts:twofactor-backup-codes-regenerate")).context["codes"]
    client.post(reverse("accounts:twofactor-remove"), {"token": codes[0]})
    actions = [(e.action, e.outcome) for e in _events(caplog)]  # type: ignore[attr-defined]
    assert actions == [
        ("login", "password_ok"),
        ("otp_verify", "success"),
        ("backup_codes_regenerate", "success"),
        ("otp_remove", "success"),
    ]
    assert not any(code in caplog.text for code in codes)


def test_sensitive_detail_keys_are_refused() -> None:
    for key in ["password", "token", "email", "username", "ip", "codes"]:
        with pytest.raises(ValueError, match="refusing sensitive details"):
            record_security_event("x", user=None, request=None, outcome="y", **{key: "v"})


def test_details_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apps.accounts.security")
    record_security_event("login_unlock", user=None, request=None, outcome="unlocked", actor_id=7)
    (event,) = _events(caplog)
    assert event.details == {"actor_id": 7}  # type: ignore[attr-defined]
    assert event.user_id is None  # type: ignore[attr-defined]
