"""The Redis cache backend, with one redis-py client per connection pool instead of one per call.

Django's RedisCacheClient builds a new `redis.Redis` for every cache operation; redis-py's constructor sets up
a few hundred response callbacks, about 0.1 ms of CPU each time, as much as the Redis round trip itself. A
chat turn makes about six cache calls. A client holds no state but its pool, so reusing it is safe across
threads, and across a fork (the pool reconnects in the child).
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
            client = self._clients.setdefault(index, self._client(connection_pool=pool))  # type: ignore[attr-defined]
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def get_and_add(self, key: str, add_key: str, add_value: Any, add_timeout: int) -> tuple[Any, bool]:
        """`get(key)` and `add(add_key, add_value, add_timeout)` in one round trip (a read and a gate).

        A Lua script rather than a pipeline: redis-py builds a pipeline like a client (see above), which cost
        more than the round trip it saved.
        """
        client = self._cache.get_client(key, write=True)
        serializer = self._cache._serializer  # type: ignore[attr-defined]
        raw, added = _get_and_add(client)(
            keys=[self.make_and_validate_key(key), self.make_and_validate_key(add_key)],
            args=[serializer.dumps(add_value), int(add_timeout)],
            client=client,
        )
        return (None if raw is None else serializer.loads(raw)), bool(added)


_GET_AND_ADD = """
local value = redis.call('GET', KEYS[1])
local added = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2])
return {value or false, added and 1 or 0}
"""
_get_and_add_script: Any = None  # a redis-py Script: its SHA, run on whichever client calls it


def _get_and_add(client: Any) -> Any:
    global _get_and_add_script  # a constant, built on first use
    if _get_and_add_script is None:
        _get_and_add_script = client.register_script(_GET_AND_ADD)
    return _get_and_add_script


def get_and_add(
    key: str, add_key: str, add_value: Any, add_timeout: int, *, using: str = "default"
) -> tuple[Any, bool]:
    """`RedisCache.get_and_add` on the cache `using` when it is this backend, two calls on any other."""
    cache = caches[using]
    if isinstance(cache, RedisCache):
        return cache.get_and_add(key, add_key, add_value, add_timeout)
    return cache.get(key), cache.add(add_key, add_value, add_timeout)
