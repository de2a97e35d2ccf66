"""Fixtures of the management API tests: alice (admin of A), bob (viewer of A), charlie (admin of B).

alice, bob and operator come from tests/conftest.py.

Admins must pass a second factor in the console; session clients for them are marked OTP-verified the way
django-otp does after a real login, so these tests hold whether or not 2FA enforcement is active.
"""

from __future__ import annotations

from typing import Any

import pytest
from django_otp import DEVICE_ID_SESSION_KEY
from rest_framework.test import APIClient

from apps.accounts.models import TOTPDevice
from apps.tenants.models import Role, Tenant
from apps.tenants.services import management_token_create, membership_add
from tests.factories import UserFactory


def session_client(user: Any, *, verified: bool = True) -> APIClient:
    """Sign `user` in; with `verified`, also as having passed a confirmed TOTP device this session."""
    client = APIClient()
    client.force_login(user)
    if verified:
        device = TOTPDevice.objects.create(user=user, name="default", confirmed=True)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client


def token_client(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def issue_token(tenant: Tenant, user: Any, **kwargs: Any) -> str:
    kwargs.setdefault("expires_at", None)
    _token, plaintext = management_token_create(tenant=tenant, user=user, name="test", **kwargs)
    return plaintext


@pytest.fixture
def charlie(tenant_b: Tenant) -> Any:
    """Admin of tenant B (the shared fixture has a viewer): even an admin elsewhere sees nothing of A."""
    user = UserFactory.create(username="charlie")
    membership_add(tenant=tenant_b, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def alice_token(tenant_a: Tenant, alice: Any) -> str:
    return issue_token(tenant_a, alice)


@pytest.fixture
def bob_token(tenant_a: Tenant, bob: Any) -> str:
    return issue_token(tenant_a, bob)


@pytest.fixture
def charlie_token(tenant_b: Tenant, charlie: Any) -> str:
    return issue_token(tenant_b, charlie)


@pytest.fixture
def alice_api(alice_token: str) -> APIClient:
    """alice, admin of A, through her token."""
    return token_client(alice_token)


@pytest.fixture
def bob_api(bob_token: str) -> APIClient:
    """bob, viewer of A, through his token."""
    return token_client(bob_token)


@pytest.fixture
def charlie_api(charlie_token: str) -> APIClient:
    """charlie, admin of B, through his token."""
    return token_client(charlie_token)


@pytest.fixture
def alice_session(alice: Any) -> APIClient:
    return session_client(alice)


@pytest.fixture
def bob_session(bob: Any) -> APIClient:
    """bob is a viewer: no second factor required, so a plain login."""
    return session_client(bob, verified=False)


@pytest.fixture
def charlie_session(charlie: Any) -> APIClient:
    return session_client(charlie)


@pytest.fixture
def operator_session(operator: Any) -> APIClient:
    return session_client(operator)
