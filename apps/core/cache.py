"""The Redis cache backend, with one redis-py client per connection pool instead of one per call.

Django's RedisCacheClient builds a new `redis.Redis` for every cache operation; redis-py's constructor sets up
a few hundred response callbacks, about 0.1 ms of CPU each time, as much as the Redis round trip itself. A
chat turn makes about six cache calls. A client holds no state but its pool, so reusing it is safe across
threads, and across a fork (the pool reconnects in the child).

Every call has a deadline (issue 15, apps/core/deadlines.py): the pool's connect and socket timeouts are
`redis_options()`, and each cache method runs in `redis_call()`, so after a failure this process skips Redis
for a moment and the callers that can do without it (API-key lookups, the answer cache) degrade at once.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.core.cache import caches
from django.core.cache.backends import redis as django_redis

from apps.core.deadlines import cache_optional_feature, redis_call, redis_options

F = TypeVar("F", bound=Callable[..., Any])


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**redis_options(), **kwargs})  # CACHES OPTIONS may override the deadlines
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

    def get_and_add(
        self, key: str, add_key: str, add_value: Any, add_timeout: int, guard_key: str | None = None
    ) -> tuple[Any, bool, bytes]:
        """`get(key)` and `add(add_key, add_value, add_timeout)` in one round trip (a read and a gate), with
        the current token of `guard_key` (b"" when none) for a later `set_if_guard`.

        A Lua script rather than a pipeline: redis-py builds a pipeline like a client (see above), which cost
        more than the round trip it saved.
        """
        client = self._cache.get_client(key, write=True)
        serializer = self._cache._serializer  # type: ignore[attr-defined]
        keys = [self.make_and_validate_key(key), self.make_and_validate_key(add_key)]
        if guard_key is not None:
            keys.append(self.make_and_validate_key(guard_key))
        raw, added, guard = _script(client, _GET_AND_ADD)(
            keys=keys, args=[serializer.dumps(add_value), int(add_timeout)], client=client
        )
        return (None if raw is None else serializer.loads(raw)), bool(added), bytes(guard or b"")

    def set_if_guard(self, key: str, value: Any, timeout: int, guard_key: str, guard: bytes) -> bool:
        """`set(key, value, timeout)` unless `guard_key` moved on from `guard` since it was read (atomic)."""
        client = self._cache.get_client(key, write=True)
        serializer = self._cache._serializer  # type: ignore[attr-defined]
        written = _script(client, _SET_IF_GUARD)(
            keys=[self.make_and_validate_key(key), self.make_and_validate_key(guard_key)],
            args=[serializer.dumps(value), int(timeout), guard],
            client=client,
        )
        return bool(written)

    def guard_and_delete(self, guard_keys: list[str], delete_keys: list[str], guard_timeout: int) -> None:
        """Give each guard a fresh token (kept `guard_timeout` s) and delete `delete_keys`, atomically."""
        client = self._cache.get_client(write=True)
        keys = [self.make_and_validate_key(k) for k in [*guard_keys, *delete_keys]]
        _script(client, _GUARD_AND_DELETE)(
            keys=keys, args=[len(guard_keys), secrets.token_hex(16), int(guard_timeout)], client=client
        )


def _guarded(method: F, *, miss: Callable[..., Any] | None) -> F:
    """Run `method` in `redis_call()`; inside `optional_cache()` a read or write of a Redis that is down
    answers `miss(*args, **kwargs)` (a miss, a skipped write) instead of raising."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            with redis_call():
                return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            feature = cache_optional_feature()
            if miss is None or feature is None:
                raise
            from apps.observability import metrics

            metrics.record_degraded(dependency="redis", feature=feature)
            return miss(*args, **kwargs)

    return call  # type: ignore[return-value]


def _get_miss(_self: Any, _key: Any, default: Any = None, version: Any = None) -> Any:
    return default


#: What a read or write returns inside `optional_cache()` while Redis is down; None: it raises there too.
_GUARDED: dict[str, Callable[..., Any] | None] = {
    "get": _get_miss,
    "get_many": lambda *a, **k: {},
    "has_key": lambda *a, **k: False,
    "set": lambda *a, **k: None,
    "set_many": lambda *a, **k: [],
    "add": lambda *a, **k: False,
    "touch": lambda *a, **k: False,
    "delete": None,  # invalidations must not be lost
    "delete_many": None,
    "incr": None,
    "clear": None,
    "get_and_add": None,
    "set_if_guard": None,
    "guard_and_delete": None,
}
for _name, _miss in _GUARDED.items():
    setattr(RedisCache, _name, _guarded(getattr(RedisCache, _name), miss=_miss))


_GET_AND_ADD = """
local value = redis.call('GET', KEYS[1])
local added = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2])
local guard = false
if KEYS[3] then guard = redis.call('GET', KEYS[3]) end
return {value or false, added and 1 or 0, guard or ''}
"""
_SET_IF_GUARD = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
_GUARD_AND_DELETE = """
local guards = tonumber(ARGV[1])
for i = 1, guards do redis.call('SET', KEYS[i], ARGV[2], 'EX', ARGV[3]) end
for i = guards + 1, #KEYS do redis.call('DEL', KEYS[i]) end
return guards
"""
_scripts: dict[str, Any] = {}  # redis-py Scripts by source: each is its SHA, run on whichever client calls it


def _script(client: Any, source: str) -> Any:
    script = _scripts.get(source)
    if script is None:  # constants, built on first use
        script = _scripts.setdefault(source, client.register_script(source))
    return script


def get_and_add(
    key: str, add_key: str, add_value: Any, add_timeout: int, *, using: str = "default"
) -> tuple[Any, bool]:
    """`RedisCache.get_and_add` on the cache `using` when it is this backend, two calls on any other."""
    value, added, _guard = get_add_and_guard(key, add_key, add_value, add_timeout, None, using=using)
    return value, added


def get_add_and_guard(
    key: str, add_key: str, add_value: Any, add_timeout: int, guard_key: str | None, *, using: str = "default"
) -> tuple[Any, bool, bytes]:
    """`get_and_add` that also returns the token of `guard_key`, for `set_if_guard` after a slow read."""
    cache = caches[using]
    if isinstance(cache, RedisCache):
        return cache.get_and_add(key, add_key, add_value, add_timeout, guard_key)
    guard = b"" if guard_key is None else str(cache.get(guard_key, "")).encode()
    return cache.get(key), cache.add(add_key, add_value, add_timeout), guard


def set_if_guard(
    key: str, value: Any, timeout: int, guard_key: str, guard: bytes, *, using: str = "default"
) -> bool:
    """Cache `value` only if nobody invalidated it (`guard_and_delete`) since `guard` was read.

    The fix for a stale fill: a reader that loaded a row before a change commits must not write what it read
    after the change dropped the cache. (Atomic on Redis; a check-then-set on other backends.)
    """
    cache = caches[using]
    if isinstance(cache, RedisCache):
        return cache.set_if_guard(key, value, timeout, guard_key, guard)
    if str(cache.get(guard_key, "")).encode() != guard:
        return False
    cache.set(key, value, timeout)
    return True


def guard_and_delete(
    guard_keys: list[str], delete_keys: list[str], guard_timeout: int, *, using: str = "default"
) -> None:
    """Invalidate: delete `delete_keys` and move each guard on, so fills read before now are refused."""
    cache = caches[using]
    if isinstance(cache, RedisCache):
        cache.guard_and_delete(guard_keys, delete_keys, guard_timeout)
        return
    token = secrets.token_hex(16)
    cache.set_many(dict.fromkeys(guard_keys, token), guard_timeout)
    cache.delete_many(delete_keys)
