"""Token buckets in Redis: rate limits that every web and worker process shares.

The integrations use one per connection to pace a vendor (apps/integrations/resilience.py); the chat, widget,
help center and management APIs use them as request rate limits (apps/core/ratelimit.py). Each bucket is one
Redis hash changed by one Lua script (atomic, and timed by Redis `TIME`, so processes with skewed clocks
agree); only the compiled scripts and the client's connection pool are cached per process.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings

if TYPE_CHECKING:
    from redis.commands.core import Script

__all__ = [
    "LUA_NOW",
    "BucketConfig",
    "TokenBucket",
    "acquire_in_order",
    "default_prefix",
    "lua_script",
    "redis_client",
]


@functools.cache
def redis_client() -> redis.Redis:
    """Return the process's Redis client (a connection pool; redis-py resets it after a fork)."""
    from apps.core.deadlines import redis_options  # short timeouts, no retry on a timeout (issue 15)

    return redis.Redis.from_url(settings.REDIS_URL, **redis_options())


@functools.cache
def lua_script(source: str) -> Script:
    """Register a Lua script once per process; callers pass their own client when they run it."""
    return redis_client().register_script(source)


def default_prefix() -> str:
    """Namespace keys under the cache prefix, so test runs (HUB_TEST_RUN) never see each other's state."""
    return f"{settings.CACHES['default']['KEY_PREFIX']}:resilience"


# Lua numbers are doubles and `tostring` keeps only 14 digits, so everything is written with %.6f.
LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.6f', x) end
"""


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """A token bucket: at most `capacity + rate * T` calls in any span of T seconds."""

    capacity: int
    rate: float  # tokens per second

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.rate <= 0:
            raise ValueError("a bucket needs capacity >= 1 and rate > 0")


_BUCKET_ACQUIRE = (
    LUA_NOW
    + """
-- ARGV: capacity, rate, n. Returns {granted, wait_seconds}; a refusal consumes nothing.
local capacity, rate, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(f[1]), tonumber(f[2])
if not tokens then tokens, ts = capacity, now end
-- penalised: the bucket is empty and refilling starts at ts
if now < ts then return {0, fmt(ts - now + n / rate)} end
tokens = math.min(capacity, tokens + (now - ts) * rate)
if tokens < n then return {0, fmt((n - tokens) / rate)} end
tokens = tokens - n
redis.call('HSET', KEYS[1], 'tokens', fmt(tokens), 'ts', fmt(now))
-- once expired the key reads as a full bucket, which it would be by then anyway
redis.call('PEXPIRE', KEYS[1], math.ceil(((capacity - tokens) / rate + 1) * 1000))
return {1, '0'}
"""
)

_BUCKETS_ACQUIRE = (
    LUA_NOW
    + """
-- KEYS: buckets, checked in order; ARGV: n, then capacity and rate of each bucket.
-- Returns {index of the first bucket that refused (0: none), wait_seconds}. Buckets before a refusal keep
-- the tokens they gave; the refusing one and those after it are not charged.
local n = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    local capacity, rate = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    local f = redis.call('HMGET', key, 'tokens', 'ts')
    local tokens, ts = tonumber(f[1]), tonumber(f[2])
    if not tokens then tokens, ts = capacity, now end
    if now < ts then return {i, fmt(ts - now + n / rate)} end
    tokens = math.min(capacity, tokens + (now - ts) * rate)
    if tokens < n then return {i, fmt((n - tokens) / rate)} end
    tokens = tokens - n
    redis.call('HSET', key, 'tokens', fmt(tokens), 'ts', fmt(now))
    redis.call('PEXPIRE', key, math.ceil(((capacity - tokens) / rate + 1) * 1000))
end
return {0, '0'}
"""
)

_BUCKET_PENALIZE = (
    LUA_NOW
    + """
-- ARGV: capacity, rate, seconds. Empties the bucket and moves the next refill to now + seconds.
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local until_ts = now + tonumber(ARGV[3])
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts')) or 0
if ts > until_ts then until_ts = ts end  -- never shorten a longer penalty
redis.call('HSET', KEYS[1], 'tokens', '0', 'ts', fmt(until_ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((until_ts - now + capacity / rate + 1) * 1000))
return fmt(until_ts)
"""
)


class TokenBucket:
    """A rate limit shared by all processes; it never sleeps, the caller decides how to wait."""

    def __init__(
        self, key: str, *, config: BucketConfig, prefix: str | None = None, client: redis.Redis | None = None
    ) -> None:
        self.key = f"{prefix or default_prefix()}:bucket:{key}"
        self.config = config
        self.client = client or redis_client()
        self._acquire = lua_script(_BUCKET_ACQUIRE)
        self._penalize = lua_script(_BUCKET_PENALIZE)

    def __repr__(self) -> str:
        return f"<TokenBucket {self.key} {self.config.capacity}@{self.config.rate}/s>"

    def acquire(self, n: int = 1) -> float:
        """Take `n` tokens and return 0.0, or take none and return the seconds until `n` will be there."""
        if not 1 <= n <= self.config.capacity:
            raise ValueError(f"cannot acquire {n} tokens from a bucket of {self.config.capacity}")
        granted, wait = self._acquire(
            keys=[self.key], args=[self.config.capacity, repr(self.config.rate), n], client=self.client
        )
        # A refusal always waits a little, even if the remaining deficit rounds to 0 at 1 µs.
        return 0.0 if int(granted) else max(float(wait), 1e-6)

    def penalize(self, retry_after_s: float) -> None:
        """Empty the bucket for `retry_after_s` seconds, for every worker (after a vendor limit answer)."""
        if not math.isfinite(retry_after_s) or retry_after_s < 0:
            raise ValueError("retry_after_s must be a finite number of seconds >= 0")
        self._penalize(
            keys=[self.key],
            args=[self.config.capacity, repr(self.config.rate), repr(float(retry_after_s))],
            client=self.client,
        )


def acquire_in_order(buckets: Sequence[TokenBucket], n: int = 1) -> tuple[TokenBucket | None, float]:
    """Take `n` tokens from each bucket in turn, in one Redis round trip; stop at the first that refuses.

    Returns (None, 0.0) when all gave, else (the refusing bucket, seconds until it would give). Buckets
    before it keep their tokens, like separate `acquire` calls in the same order would. All buckets use
    the first one's client.
    """
    if not buckets:
        return None, 0.0
    args: list[Any] = [n]
    for bucket in buckets:
        if not 1 <= n <= bucket.config.capacity:
            raise ValueError(f"cannot acquire {n} tokens from a bucket of {bucket.config.capacity}")
        args += [bucket.config.capacity, repr(bucket.config.rate)]
    refused, wait = lua_script(_BUCKETS_ACQUIRE)(
        keys=[bucket.key for bucket in buckets], args=args, client=buckets[0].client
    )
    if not int(refused):
        return None, 0.0
    return buckets[int(refused) - 1], max(float(wait), 1e-6)
