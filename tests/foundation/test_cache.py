"""The Redis cache backend (apps/core/cache.py): one client per pool, a read with a gate in one round trip."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.cache import cache, caches

from apps.core.cache import RedisCache, get_add_and_guard, get_and_add, guard_and_delete, set_if_guard


def test_the_backend_reuses_its_redis_client() -> None:
    backend = caches["default"]
    assert isinstance(backend, RedisCache)
    client = backend._cache.get_client("k")
    assert backend._cache.get_client("other", write=True) is client
    cache.set("hub-cache-test", {"a": 1}, 5)
    assert cache.get("hub-cache-test") == {"a": 1}


def test_get_and_add_reads_and_gates_once() -> None:
    key, gate = f"v-{uuid.uuid4()}", f"g-{uuid.uuid4()}"
    assert get_and_add(key, gate, 1, 60) == (None, True)
    cache.set(key, ["entry", 2], 60)
    assert get_and_add(key, gate, 1, 60) == (["entry", 2], False), "the gate is taken for 60 s"
    cache.delete(gate)
    assert get_and_add(key, gate, 1, 60) == (["entry", 2], True)


def test_get_and_add_works_on_any_backend(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "hub-cache-test"},
    }
    assert get_and_add("v", "g", 1, 60, using="other") == (None, True)
    caches["other"].set("v", 3)
    assert get_and_add("v", "g", 1, 60, using="other") == (3, False)


def test_set_if_guard_refuses_a_fill_read_before_an_invalidation() -> None:
    key, gate, guard = f"v-{uuid.uuid4()}", f"g-{uuid.uuid4()}", f"guard-{uuid.uuid4()}"
    _value, _added, token = get_add_and_guard(key, gate, 1, 60, guard)
    assert token == b""
    guard_and_delete([guard], [key], 60)  # a change commits while the reader is busy
    assert set_if_guard(key, "stale", 60, guard, token) is False
    assert cache.get(key) is None
    _value, _added, fresh = get_add_and_guard(key, gate, 1, 60, guard)
    assert fresh not in {b"", token}
    assert set_if_guard(key, "fresh", 60, guard, fresh) is True
    assert get_and_add(key, gate, 1, 60) == ("fresh", False)


def test_guarded_fills_work_on_any_backend(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "hub-guard-test"},
    }
    _value, _added, token = get_add_and_guard("v", "g", 1, 60, "guard", using="other")
    guard_and_delete(["guard"], ["v"], 60, using="other")
    assert set_if_guard("v", 1, 60, "guard", token, using="other") is False
    _value, _added, token = get_add_and_guard("v", "g", 1, 60, "guard", using="other")
    assert set_if_guard("v", 1, 60, "guard", token, using="other") is True
    assert caches["other"].get("v") == 1
