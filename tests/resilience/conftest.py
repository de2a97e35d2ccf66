"""Fixtures for the breaker and bucket tests: real Redis, a fresh key prefix per test, fast timings."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.conf import settings

from apps.integrations.models import Connection
from apps.integrations.resilience import RedisBreakerStore


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test only, inside this run's cache prefix (which tests/conftest.py purges)."""
    return f"{settings.CACHES['default']['KEY_PREFIX']}:res-{uuid.uuid4().hex}"


@pytest.fixture
def store(prefix: str) -> RedisBreakerStore:
    return RedisBreakerStore(prefix=prefix)


@pytest.fixture
def make_connection() -> Callable[..., Connection]:
    """Unsaved connections: the breaker and bucket need only tenant_id, id and kind."""

    def make(*, tenant_id: int = 1, kind: str = "salesforce") -> Connection:
        return Connection(tenant_id=tenant_id, kind=kind, name=f"{kind}-{uuid.uuid4().hex[:6]}")

    return make
