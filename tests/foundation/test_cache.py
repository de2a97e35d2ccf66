"""The Redis cache backend (hub/cache.py): one client per pool, and a read with a gate in one round trip."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.cache import cache, caches

from hub.cache import RedisCache, get_and_add


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
