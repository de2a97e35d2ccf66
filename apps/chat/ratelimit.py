"""Chat API rate limits per API key and per tenant, as a DRF throttle over Redis token buckets.

The buckets are `apps.integrations.resilience.TokenBucket`s, both checked by one Lua script (one round
trip) and timed by Redis, so every web process shares them. A limit of N requests per T seconds is a bucket
of N tokens refilled at N/T per second: a burst of N, then a steady N/T per second. A refused request gets
429, `Retry-After` (whole seconds until a token is back) and a JSON message.

Order matters: the key's bucket is checked first, and a request it refuses is not charged to the tenant, so
one misbehaving key that keeps calling after its 429 cannot starve the tenant's other channels.

Without Redis (issue 15) both limits fail open for HUB_CHAT_RATE_FAIL_OPEN_SECONDS (default 60) from the
moment this process first saw the outage, then closed (503 with Retry-After): the limits protect capacity and
fairness, not secrets, so a short Redis blip must not stop every channel's chat; the web processes' worker
count still caps what one pod serves; and an outage longer than the window is not a blip, so the API does
not stay unlimited. The widget's and the help center's limits share this policy (`acquire_or_fail_open`).
(The login lockout counters, a brute-force guard, fail closed at once: apps/accounts.)
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.chat.principal import ChannelPrincipal
from apps.integrations.resilience import BucketConfig, TokenBucket, acquire_or_fail_open
from apps.observability import metrics


def _prefix() -> str:
    return f"{settings.CACHES['default']['KEY_PREFIX']}:chat-rate"


def bucket(scope: str, ident: Any, rate: tuple[int, int]) -> TokenBucket:
    """The shared bucket of one key or tenant for a (requests, seconds) rate."""
    requests, seconds = rate
    return TokenBucket(
        f"{scope}:{ident}", config=BucketConfig(capacity=requests, rate=requests / seconds), prefix=_prefix()
    )


class ChatRateThrottle(BaseThrottle):
    """HUB_CHAT_RATE_PER_KEY per API key, then HUB_CHAT_RATE_PER_TENANT per tenant (shared by all its keys
    and channels), checked in one Redis round trip."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, ChannelPrincipal):
            return True  # no key: the permission answers 401
        per_key = bucket("key", principal.key_id, settings.HUB_CHAT_RATE_PER_KEY)
        per_tenant = bucket("tenant", principal.tenant.id, settings.HUB_CHAT_RATE_PER_TENANT)
        refused, wait = acquire_or_fail_open([per_key, per_tenant])
        if refused is None:
            return True
        self._wait = wait
        metrics.record_rate_limit_hit("api_key" if refused is per_key else "tenant")
        return False

    def wait(self) -> float | None:
        return self._wait


#: The throttles every chat API view lists.
CHAT_THROTTLES: tuple[type[BaseThrottle], ...] = (ChatRateThrottle,)


def chat_throttles() -> list[BaseThrottle]:
    """Fresh throttle instances for a view's `get_throttles()`."""
    return [cls() for cls in CHAT_THROTTLES]
