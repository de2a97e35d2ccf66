"""Per-connection circuit breaker and token bucket, with their state in Redis.

Every web and worker process must agree on whether a vendor is down and how much quota is left, so neither
keeps anything in process memory: each breaker is one Redis hash, each bucket another, and every change is
one Lua script (atomic, and timed by Redis `TIME` so workers with skewed clocks agree). Only the compiled
scripts and the client's connection pool are cached per process; they are code and plumbing, not state.

Sync runs, outbox deliveries and knowledge imports send through `connection_session(connection)`, which
puts both in front of every request. Usage of the parts::

    breaker = breaker_for(connection)
    breaker.before_call()                 # BreakerOpen(retry_at) while open, or while another probe runs
    ...call the vendor...; breaker.record_success() / breaker.record_failure()

    bucket = bucket_for(connection)
    wait_s = bucket.acquire()             # 0.0 = go; else retry in wait_s (nothing was consumed)
    bucket.penalize(exc.retry_after)      # after a vendor 429/limit, for every worker at once
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol
from uuid import UUID

import redis
import requests
from django.conf import settings

from apps.integrations.conf import connector_session
from apps.observability import metrics
from connectors.errors import ConnectorError, RateLimited, VendorUnavailable
from connectors.http import HttpSession, salesforce_limit

if TYPE_CHECKING:
    from redis.commands.core import Script

__all__ = [
    "VENDOR_RATES",
    "BreakerConfig",
    "BreakerOpen",
    "BreakerState",
    "BreakerStore",
    "BucketConfig",
    "CircuitBreaker",
    "RedisBreakerStore",
    "TokenBucket",
    "breaker_for",
    "bucket_for",
    "connection_session",
    "guard_session",
    "guarded",
    "penalize_rate_limited",
]

StateName = Literal["closed", "open", "half_open"]
_STATES: dict[str, StateName] = {"closed": "closed", "open": "open", "half_open": "half_open"}


class _ConnectionLike(Protocol):
    """What the breaker and bucket need from `apps.integrations.models.Connection`."""

    @property
    def tenant_id(self) -> Any: ...
    @property
    def id(self) -> UUID: ...
    @property
    def kind(self) -> str: ...


# --- plumbing ------------------------------------------------------------------------------------------


@functools.cache
def redis_client() -> redis.Redis:
    """Return the process's Redis client (a connection pool; redis-py resets it after a fork)."""
    from apps.core.deadlines import redis_options  # short timeouts, no retry on a timeout (issue 15)

    return redis.Redis.from_url(settings.REDIS_URL, **redis_options())


@functools.cache
def _script(source: str) -> Script:
    """Register a Lua script once per process; callers pass their own client when they run it."""
    return redis_client().register_script(source)


def default_prefix() -> str:
    """Namespace keys under the cache prefix, so test runs (HUB_TEST_RUN) never see each other's state."""
    return f"{settings.CACHES['default']['KEY_PREFIX']}:resilience"


def connection_key(connection: _ConnectionLike) -> str:
    return f"{connection.tenant_id}:{connection.id}"


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value else None


# Lua numbers are doubles and `tostring` keeps only 14 digits, so everything is written with %.6f.
_LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.6f', x) end
"""


# --- circuit breaker -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of one breaker.

    - closed → open after `failure_threshold` consecutive failures (setting HUB_BREAKER_FAILURE_THRESHOLD,
      default 5), or when at least `error_ratio` (0.5) of the last `window` (20) calls failed, once the
      window holds `min_calls` (10) calls;
    - open → half-open after `cooldown` seconds (HUB_BREAKER_COOLDOWN_SECONDS, default 30), doubled on
      every re-open from half-open up to `max_cooldown` (default ten cool-downs), reset when it closes;
    - half-open lets one probe through; its claim lapses after `probe_timeout` seconds (default 60, longer
      than any vendor call's timeouts) so a prober that crashed cannot wedge the breaker;
    - the probe's success closes the breaker, its failure re-opens it.
    """

    failure_threshold: int = 5
    error_ratio: float = 0.5
    window: int = 20
    min_calls: int = 10
    cooldown: float = 30.0
    max_cooldown: float = 300.0
    probe_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if not 0 < self.error_ratio <= 1:
            raise ValueError("error_ratio must be in (0, 1]")
        if not 1 <= self.min_calls <= self.window:
            raise ValueError("min_calls must be between 1 and window")
        if self.cooldown <= 0 or self.max_cooldown < self.cooldown:
            raise ValueError("cooldown must be > 0 and <= max_cooldown")
        if self.probe_timeout <= 0:
            raise ValueError("probe_timeout must be > 0")

    @classmethod
    def from_settings(cls, **overrides: Any) -> BreakerConfig:
        """Build the defaults from settings, then apply a call site's `overrides`."""
        cooldown = float(settings.HUB_BREAKER_COOLDOWN_SECONDS)
        base = cls(
            failure_threshold=settings.HUB_BREAKER_FAILURE_THRESHOLD,
            cooldown=cooldown,
            max_cooldown=10 * cooldown,
        )
        if "cooldown" in overrides and "max_cooldown" not in overrides:
            overrides["max_cooldown"] = 10 * float(overrides["cooldown"])
        return replace(base, **overrides)

    @property
    def ttl_ms(self) -> int:
        """Idle breakers expire (a missing hash reads as closed), but never while open or probing."""
        return int(max(86_400.0, 2 * self.max_cooldown + self.probe_timeout) * 1000)


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A breaker as the console shows it; `retry_at` is when the next probe may go (None when closed)."""

    state: StateName
    failures: int
    opened_at: datetime | None
    retry_at: datetime | None


class BreakerOpen(Exception):
    """The breaker refused the call: skip the work and try again at `retry_at` (not an error to retry now)."""

    def __init__(self, retry_at: datetime, *, name: str = "") -> None:
        super().__init__(f"circuit breaker {name or '(unnamed)'} is open until {retry_at.isoformat()}")
        self.retry_at = retry_at
        self.name = name


class BreakerStore(Protocol):
    """Where breaker state lives. Each method must be atomic across every process sharing the store."""

    def before_call(self, key: str, config: BreakerConfig) -> float | None:
        """Admit a call (return None) or refuse it (return the epoch second the caller may retry)."""
        ...

    def record(self, key: str, config: BreakerConfig, *, success: bool) -> StateName | None:
        """Apply one call's outcome; return the state it entered when it caused a transition, else None."""
        ...

    def snapshot(self, key: str) -> BreakerState:
        """Read the current state (open past its cool-down reads as half-open: the next call probes)."""
        ...


_BREAKER_BEFORE = (
    _LUA_NOW
    + """
-- ARGV: probe_timeout, ttl_ms, cooldown. Returns {allowed, retry_at}.
local f = redis.call('HMGET', KEYS[1], 'state', 'retry_at', 'probe_until')
local state = f[1] or 'closed'
if state == 'closed' then return {1, ''} end
if state == 'open' then
  local retry_at = tonumber(f[2]) or 0
  if now < retry_at then return {0, fmt(retry_at)} end
else
  -- a probe is out: look again after one cool-down (it usually answers sooner than its claim lapses)
  local probe_until = tonumber(f[3]) or 0
  if now < probe_until then return {0, fmt(math.min(probe_until, now + tonumber(ARGV[3])))} end
end
-- cool-down over (open), or the previous probe's claim lapsed (half-open): this caller is the probe
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', fmt(now + tonumber(ARGV[1])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {2, ''}
"""
)

_BREAKER_RECORD = (
    _LUA_NOW
    + """
-- ARGV: success (1/0), failure_threshold, error_ratio, window, min_calls, cooldown, max_cooldown, ttl_ms
-- Returns the state after the call, with a trailing '!' when this outcome changed it.
local success = ARGV[1] == '1'
local threshold, ratio = tonumber(ARGV[2]), tonumber(ARGV[3])
local size, min_calls = tonumber(ARGV[4]), tonumber(ARGV[5])
local cooldown, max_cooldown = tonumber(ARGV[6]), tonumber(ARGV[7])
local f = redis.call('HMGET', KEYS[1], 'state', 'failures', 'window', 'trips')
local state = f[1] or 'closed'
local failures = tonumber(f[2]) or 0
local window = f[3] or ''
local trips = tonumber(f[4]) or 0

local function open(n)
  local wait = math.min(cooldown * 2 ^ (n - 1), max_cooldown)
  redis.call('HSET', KEYS[1], 'state', 'open', 'failures', failures, 'window', '', 'trips', n,
             'opened_at', fmt(now), 'retry_at', fmt(now + wait), 'probe_until', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  return 'open!'
end

-- a late outcome of a call admitted before the breaker opened says nothing new
if state == 'open' then return state end
if state == 'half_open' then
  if success then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'window', '', 'trips', 0,
               'opened_at', '0', 'retry_at', '0', 'probe_until', '0')
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
    return 'closed!'
  end
  failures = failures + 1
  return open(trips + 1)
end

window = string.sub(window .. (success and '0' or '1'), -size)
if success then
  failures = 0
else
  failures = failures + 1
  local _, bad = string.gsub(window, '1', '')
  if failures >= threshold or (#window >= min_calls and bad >= ratio * #window) then
    return open(1)
  end
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', failures, 'window', window)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return 'closed'
"""
)

_BREAKER_SNAPSHOT = (
    _LUA_NOW
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at', 'retry_at', 'probe_until')
local state = f[1] or 'closed'
local retry_at = f[4] or '0'
if state == 'open' and now >= (tonumber(retry_at) or 0) then state = 'half_open' end
if f[1] == 'half_open' then retry_at = f[5] or '0' end
return {state, f[2] or '0', f[3] or '0', retry_at}
"""
)


class RedisBreakerStore:
    """The default BreakerStore: one hash per breaker under `prefix`, every transition one Lua script."""

    def __init__(self, *, prefix: str | None = None, client: redis.Redis | None = None) -> None:
        self.prefix = prefix or default_prefix()
        self.client = client or redis_client()
        self._before = _script(_BREAKER_BEFORE)
        self._record = _script(_BREAKER_RECORD)
        self._snapshot = _script(_BREAKER_SNAPSHOT)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:breaker:{key}"

    def before_call(self, key: str, config: BreakerConfig) -> float | None:
        allowed, retry_at = self._before(
            keys=[self._key(key)],
            args=[repr(config.probe_timeout), config.ttl_ms, repr(config.cooldown)],
            client=self.client,
        )
        return None if int(allowed) else float(retry_at)

    def record(self, key: str, config: BreakerConfig, *, success: bool) -> StateName | None:
        result = self._record(
            keys=[self._key(key)],
            args=[
                int(success),
                config.failure_threshold,
                repr(config.error_ratio),
                config.window,
                config.min_calls,
                repr(config.cooldown),
                repr(config.max_cooldown),
                config.ttl_ms,
            ],
            client=self.client,
        )
        text = result.decode() if isinstance(result, bytes) else str(result)
        return _STATES[text[:-1]] if text.endswith("!") else None

    def snapshot(self, key: str) -> BreakerState:
        state, failures, opened_at, retry_at = self._snapshot(keys=[self._key(key)], client=self.client)
        name = _STATES[state.decode() if isinstance(state, bytes) else str(state)]
        return BreakerState(
            state=name,
            failures=int(failures),
            opened_at=_dt(float(opened_at)),
            retry_at=None if name == "closed" else _dt(float(retry_at)),
        )


class CircuitBreaker:
    """A named breaker over a BreakerStore; see BreakerConfig for the thresholds."""

    def __init__(
        self,
        name: str,
        *,
        config: BreakerConfig | None = None,
        store: BreakerStore | None = None,
        kind: str = "",
    ):
        self.name = name
        self.kind = kind  # the connector kind, for metrics labels
        self.config = config or BreakerConfig.from_settings()
        self.store: BreakerStore = store or RedisBreakerStore()

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name}>"

    def before_call(self) -> None:
        """Raise BreakerOpen unless a call may go now (in half-open only the one probe may)."""
        retry_at = self.store.before_call(self.name, self.config)
        if retry_at is not None:
            raise BreakerOpen(datetime.fromtimestamp(retry_at, tz=UTC), name=self.name)

    def record_success(self) -> None:
        self._transitioned(self.store.record(self.name, self.config, success=True))

    def record_failure(self) -> None:
        self._transitioned(self.store.record(self.name, self.config, success=False))

    def _transitioned(self, state: StateName | None) -> None:
        if state is not None:
            metrics.record_breaker_transition(connector=self.kind or "unknown", state=state)

    def state(self) -> BreakerState:
        return self.store.snapshot(self.name)


def breaker_for(
    connection: _ConnectionLike,
    *,
    config: BreakerConfig | None = None,
    store: BreakerStore | None = None,
    **overrides: Any,
) -> CircuitBreaker:
    """Return the breaker of one connection (keyed by tenant and connection id, so tenants never share).

    `overrides` adjust the settings' defaults for this call site, e.g. `failure_threshold=3`.
    """
    if config is None:
        config = BreakerConfig.from_settings(**overrides)
    elif overrides:
        config = replace(config, **overrides)
    return CircuitBreaker(connection_key(connection), config=config, store=store, kind=connection.kind)


@contextmanager
def guarded(breaker: CircuitBreaker) -> Iterator[None]:
    """Run one vendor call under `breaker`, feeding it the outcome.

    Transient vendor errors count as failures. A permanent error or a rate limit is an answer from a
    working vendor, so it counts as a success (limits are the bucket's business, not the breaker's). Any
    other exception is our own bug and records nothing; a probe claim it held lapses by itself.
    """
    breaker.before_call()
    try:
        yield
    except RateLimited:
        breaker.record_success()
        raise
    except ConnectorError as exc:
        if exc.permanent:
            breaker.record_success()
        else:
            breaker.record_failure()
        raise
    breaker.record_success()


# --- token bucket --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """A token bucket: at most `capacity + rate * T` calls in any span of T seconds."""

    capacity: int
    rate: float  # tokens per second

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.rate <= 0:
            raise ValueError("a bucket needs capacity >= 1 and rate > 0")


#: Default pace per connection kind. Vendors meter by longer windows than a bucket sees, so these stay
#: below the documented limits and a vendor's own limit answer (429/403) is handled by `penalize`.
VENDOR_RATES: dict[str, BucketConfig] = {
    # "100-190 requests per 10 s" rolling: 10 + 9 * 10 s = 100 fits the smallest tier in any 10-s window.
    "hubspot": BucketConfig(capacity=10, rate=9.0),
    # Daily API usage, not a per-second limit; 25 is also Salesforce's long-running concurrency cap.
    "salesforce": BucketConfig(capacity=25, rate=25.0),
    # Hourly rate-limit rules per user; instance defaults vary, stay modest.
    "servicenow": BucketConfig(capacity=20, rate=20.0),
    "sap": BucketConfig(capacity=10, rate=10.0),
    # Dataverse service protection, per user per 5 minutes: 6,000 requests, 20 min combined execution time,
    # 52 concurrent (learn.microsoft.com/power-apps/developer/data-platform/api-limits). 20 + 18 * 300 s =
    # 5,420 requests in any 5-minute window stays under the first; its 429s + Retry-After → penalize.
    "dynamics365": BucketConfig(capacity=20, rate=18.0),
    # SAP Gateway has no published per-client quota; an API Management policy in front (BTP) answers 429.
    "sap_odata": BucketConfig(capacity=10, rate=10.0),
    # Messaging platform accounts (issue 17): one bucket per account, sends only (the relay's replies).
    # WhatsApp Cloud API: 80 messages/s per business phone number by default, inbound and outbound counted
    # together (developers.facebook.com/documentation/business-messaging/whatsapp/throughput; error 130429
    # above it). A bot answers each inbound message, so replies get half of it; bursts may use all 80.
    "whatsapp": BucketConfig(capacity=80, rate=40.0),
    # Slack chat.postMessage, "special tier": about 1 message/s per channel with short bursts, plus an
    # unpublished workspace-wide limit (docs.slack.dev/apis/web-api/rate-limits). The bucket is per workspace
    # (each user's DM is its own channel); a channel's own limit comes back as 429 + Retry-After → penalize.
    "slack": BucketConfig(capacity=40, rate=20.0),
    # Bot Framework in Teams: global limit 50 requests/s per app per tenant; per conversation 7/s, 8/2 s,
    # 60/30 s (learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit); 429s → penalize.
    "teams": BucketConfig(capacity=50, rate=40.0),
    # Twilio Messaging: the REST API accepts and queues per sender (a US long code sends 1 segment/s, a
    # short code 100+/s; a queue beyond its validity period fails with 21611/30001: twilio.com/docs/api/
    # errors/30001); accounts are capped around 25 messages/s for MMS. Accept at 25/s, Twilio paces delivery.
    "sms": BucketConfig(capacity=25, rate=25.0),
}
DEFAULT_RATE = BucketConfig(capacity=10, rate=10.0)

_BUCKET_ACQUIRE = (
    _LUA_NOW
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
    _LUA_NOW
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
    _LUA_NOW
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
        self._acquire = _script(_BUCKET_ACQUIRE)
        self._penalize = _script(_BUCKET_PENALIZE)

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
    refused, wait = _script(_BUCKETS_ACQUIRE)(
        keys=[bucket.key for bucket in buckets], args=args, client=buckets[0].client
    )
    if not int(refused):
        return None, 0.0
    return buckets[int(refused) - 1], max(float(wait), 1e-6)


def acquire_or_fail_open(buckets: Sequence[TokenBucket]) -> tuple[TokenBucket | None, float]:
    """`acquire_in_order` for a public rate limit, with the hub's policy for a Redis outage (issue 15).

    While Redis is unreachable the limit is not enforced for HUB_CHAT_RATE_FAIL_OPEN_SECONDS from the moment
    this process first saw the outage (counted as degraded), then DependencyUnavailable (503, Retry-After):
    a blip must not close the chat or the help center, a long outage must not leave them unlimited.
    """
    from apps.core.deadlines import DependencyUnavailable, redis_call, redis_health

    try:
        with redis_call():
            return acquire_in_order(buckets)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if redis_health.down_for() > settings.HUB_CHAT_RATE_FAIL_OPEN_SECONDS:
            raise DependencyUnavailable("redis", "rate limits cannot be checked") from exc
        metrics.record_degraded(dependency="redis", feature="rate_limit")
        return None, 0.0


def bucket_for(
    connection: _ConnectionLike,
    *,
    capacity: int | None = None,
    rate: float | None = None,
    prefix: str | None = None,
    client: redis.Redis | None = None,
) -> TokenBucket:
    """Return the bucket of one connection, paced by its vendor's default unless `capacity`/`rate` say."""
    default = VENDOR_RATES.get(connection.kind, DEFAULT_RATE)
    config = BucketConfig(
        capacity=default.capacity if capacity is None else capacity,
        rate=default.rate if rate is None else rate,
    )
    return TokenBucket(connection_key(connection), config=config, prefix=prefix, client=client)


# --- the guarded outbound session ----------------------------------------------------------------------
#: Longest token-bucket wait slept inside a task; longer waits reschedule the task instead.
MAX_BUCKET_SLEEP = 5.0


def guard_session(session: HttpSession, *, breaker: CircuitBreaker, bucket: TokenBucket) -> HttpSession:
    """Make every request of `session` pass the connection's token bucket and circuit breaker.

    Both live in Redis, so all workers share one quota and one view of the vendor's health. A short
    bucket wait is slept here; a long one (a vendor limit penalty) becomes RateLimited so the task is
    rescheduled instead of holding a worker. 5xx answers and transport errors count as breaker failures.
    Each call's latency and status class, and each failed call, go to the metrics.
    """
    send = session.request
    kind = breaker.kind

    def request(method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        held_back = False
        while (wait := bucket.acquire()) > 0:
            if not held_back:
                held_back = True
                metrics.record_rate_limit_hit("vendor")
            if wait > MAX_BUCKET_SLEEP:
                raise RateLimited("The connection's request quota is used up for now.", retry_after=wait)
            time.sleep(wait)
        breaker.before_call()
        started = time.perf_counter()
        try:
            response = send(method, url, *args, **kwargs)
        except VendorUnavailable as exc:
            breaker.record_failure()
            metrics.observe_vendor_request(connector=kind, status=None, seconds=time.perf_counter() - started)
            timed_out = isinstance(exc.__cause__, requests.Timeout)
            metrics.record_vendor_error(connector=kind, kind="timeout" if timed_out else "unavailable")
            raise
        status = response.status_code
        metrics.observe_vendor_request(connector=kind, status=status, seconds=time.perf_counter() - started)
        if status >= 400 and (error_kind := vendor_error_kind(response)):
            metrics.record_vendor_error(connector=kind, kind=error_kind)
        if response.status_code >= 500:
            breaker.record_failure()
        else:
            breaker.record_success()
        return response

    session.request = request  # type: ignore[method-assign]
    return session


def vendor_error_kind(response: requests.Response) -> str | None:
    """Classify a vendor's error answer for hub_vendor_errors_total (the connector still decides retries)."""
    status = response.status_code
    if status == 429 or (status == 403 and salesforce_limit(response) is not None):
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status >= 500:
        return "unavailable"
    if status == 408:
        return "timeout"
    return "permanent" if status >= 400 else None


def connection_session(connection: _ConnectionLike) -> HttpSession:
    """The hub's outbound session (guard, trust, redaction) behind the connection's bucket and breaker."""
    return guard_session(connector_session(), breaker=breaker_for(connection), bucket=bucket_for(connection))


def penalize_rate_limited(exc: BaseException, *, connection: _ConnectionLike) -> None:
    """After a vendor's rate-limit answer with a wait, make every worker hold back, not just this one."""
    if isinstance(exc, RateLimited) and exc.retry_after:
        bucket_for(connection).penalize(exc.retry_after)
