"""Account tests: the cast and the 2FA helpers come from tests/fixtures/ (tenants, auth)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def no_otp_throttle(settings: Any) -> None:
    """django-otp delays retries after a wrong code; tests that retry at once switch that off."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
