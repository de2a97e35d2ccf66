"""The active data key version in the shared cache: no query per encrypted write, rotation seen at once by
every process, a stale or missing entry never breaks a write."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.core.context import as_ref, tenant_context
from apps.security import crypto
from apps.security.models import DataKey
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def _datakey_queries(tenant: Tenant, action: Any) -> int:
    with CaptureQueriesContext(connections[as_ref(tenant).db_alias]) as queries:
        action()
    return sum("security_datakey" in q["sql"] for q in queries.captured_queries)


def _warm() -> None:
    """Create v1 and cache it (its commit would; in a test transaction the next read does)."""
    crypto.encrypt("create", aad=b"x")
    crypto.encrypt("cache", aad=b"x")


def test_encrypted_writes_read_the_active_version_from_the_cache(tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        first = crypto.encrypt("one", aad=b"x")  # creates v1 (cached on commit; here: on the next read)
        assert crypto.version_of(first) == 1
        assert _datakey_queries(tenant_a, lambda: crypto.encrypt("two", aad=b"x")) == 1
        assert _datakey_queries(tenant_a, lambda: [crypto.encrypt("v", aad=b"x") for _ in range(5)]) == 0
        assert cache.get(crypto._active_key(as_ref(tenant_a))) == 1


def test_a_rotation_is_used_by_the_next_write_of_every_process(
    tenant_a: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    ref = as_ref(tenant_a)
    with tenant_context(tenant_a):
        _warm()
        assert cache.get(crypto._active_key(ref)) == 1
        with django_capture_on_commit_callbacks(using=ref.db_alias, execute=True):
            crypto.create_data_key(ref, retire_current=True)
        # The shared entry now names v2: another process (which reads only the cache) writes under it.
        assert cache.get(crypto._active_key(ref)) == 2
        assert crypto.version_of(crypto.encrypt("after", aad=b"x")) == 2


def test_a_reader_that_saw_the_old_version_cannot_put_it_back(
    tenant_a: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    ref = as_ref(tenant_a)
    with tenant_context(tenant_a):
        _warm()
        with django_capture_on_commit_callbacks(using=ref.db_alias, execute=True):
            crypto.create_data_key(ref, retire_current=True)
        crypto._cache_active(ref, 1, overwrite=False)  # a slow reader's late write of what it read
        assert cache.get(crypto._active_key(ref)) == 2


def test_within_the_rotating_transaction_writes_use_the_new_version(tenant_a: Tenant) -> None:
    ref = as_ref(tenant_a)
    with tenant_context(tenant_a):
        _warm()
        crypto.create_data_key(ref, retire_current=True)  # its commit has not happened (test transaction)
        assert crypto.version_of(crypto.encrypt("now", aad=b"x")) == 2


def test_a_cached_version_without_its_row_is_dropped_and_the_database_asked(tenant_a: Tenant) -> None:
    ref = as_ref(tenant_a)
    with tenant_context(tenant_a):
        _warm()
        cache.set(crypto._active_key(ref), 41, 60)  # e.g. a row rolled back after the entry was written
        value = crypto.encrypt("still fine", aad=b"x")
        assert crypto.version_of(value) == 1
        assert crypto.decrypt(value, aad=b"x") == "still fine"
        assert cache.get(crypto._active_key(ref)) == 1


def test_a_destroyed_cached_version_is_never_used(tenant_a: Tenant) -> None:
    ref = as_ref(tenant_a)
    with tenant_context(tenant_a):
        _warm()
        crypto.create_data_key(ref, retire_current=True)
        DataKey.objects.filter(version=1).update(
            status=DataKey.Status.DESTROYED, wrapped_key=None, destroyed_at=timezone.now()
        )
        crypto.forget_keys(ref, [1])
        cache.set(crypto._active_key(ref), 1, 60)  # stale: a lost overwrite
        assert crypto.version_of(crypto.encrypt("v", aad=b"x")) == 2


def test_without_redis_the_database_answers(tenant_a: Tenant, monkeypatch: Any) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("down")

    with tenant_context(tenant_a):
        _warm()
        for name in ("get", "add", "set", "delete"):
            monkeypatch.setattr(cache, name, down)
        value = crypto.encrypt("no redis", aad=b"x")
        assert crypto.decrypt(value, aad=b"x") == "no redis"
        crypto.create_data_key(as_ref(tenant_a), retire_current=True)
        assert crypto.version_of(crypto.encrypt("v", aad=b"x")) == 2
