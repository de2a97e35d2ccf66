"""Test helpers to sign users in the way the console expects (password + verified second factor)."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from apps.accounts.models import TOTPDevice


def login_verified(client: Client, user: Any) -> TOTPDevice:
    """Log `user` in with a confirmed TOTP device marked verified for this session."""
    device, _ = TOTPDevice.objects.get_or_create(user=user, name="test", defaults={"confirmed": True})
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device
