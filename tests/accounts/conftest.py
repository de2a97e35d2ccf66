"""Fixtures for account tests: alice (admin of A), bob (viewer of A), charlie (viewer of B), an operator."""

from __future__ import annotations

import time
from base64 import b32encode
from typing import Any

import pyotp
import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from apps.accounts.models import TOTPDevice
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory

PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def alice(tenant_a: Tenant) -> Any:
    user = UserFactory.create(username="alice", email="alice@example.com")
    membership_add(tenant=tenant_a, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def bob(tenant_a: Tenant) -> Any:
    user = UserFactory.create(username="bob", email="bob@example.com")
    membership_add(tenant=tenant_a, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def charlie(tenant_b: Tenant) -> Any:
    user = UserFactory.create(username="charlie", email="charlie@example.com")
    membership_add(tenant=tenant_b, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def operator(db: None) -> Any:
    return UserFactory.create(username="operator", email="operator@example.com", is_staff=True)


def totp_for(device: TOTPDevice) -> pyotp.TOTP:
    """The authenticator app's view of a device: pyotp with the device's secret."""
    return pyotp.TOTP(b32encode(device.bin_key).decode())


def next_code(device: TOTPDevice) -> str:
    """A valid code for the next 30-second step (the current one may already be used: replay protection)."""
    return totp_for(device).at(time.time() + device.step)


def enroll(user: Any) -> TOTPDevice:
    """Give `user` a confirmed TOTP device directly (the enrollment flow has its own tests)."""
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def login_verified(client: Client, user: Any) -> TOTPDevice:
    """Sign `user` in with a confirmed device and a session verified by it, as after a full 2FA login."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or enroll(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


@pytest.fixture
def no_otp_throttle(settings: Any) -> None:
    """django-otp delays retries after a wrong code; tests that retry at once switch that off."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
