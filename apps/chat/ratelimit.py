"""Chat API rate limits per API key and per tenant, as DRF throttles over Redis token buckets.

The buckets are `apps.integrations.resilience.TokenBucket`: one Lua script per check, timed by Redis, so
every web process shares them. A limit of N requests per T seconds is a bucket of N tokens refilled at N/T
per second: a burst of N, then a steady N/T per second. A refused request gets 429, `Retry-After` (whole
seconds until a token is back) and a JSON message.

Order matters: the key throttle runs first, and a request it refuses is not charged to the tenant, so one
misbehaving key that keeps calling after its 429 cannot starve the tenant's other channels.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.chat.principal import ChannelPrincipal
from apps.integrations.resilience import BucketConfig, TokenBucket
from apps.observability import metrics

_REFUSED = "_chat_rate_refused"


def _prefix() -> str:
    return f"{settings.CACHES['default']['KEY_PREFIX']}:chat-rate"


def bucket(scope: str, ident: Any, rate: tuple[int, int]) -> TokenBucket:
    """The shared bucket of one key or tenant for a (requests, seconds) rate."""
    requests, seconds = rate
    return TokenBucket(
        f"{scope}:{ident}", config=BucketConfig(capacity=requests, rate=requests / seconds), prefix=_prefix()
    )


class _ChatThrottle(BaseThrottle):
    scope = ""

    def __init__(self) -> None:
        self._wait: float | None = None

    def bucket_for(self, principal: ChannelPrincipal) -> TokenBucket:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, ChannelPrincipal) or getattr(request, _REFUSED, False):
            return True  # no key (the permission answers 401), or already refused by an earlier throttle
        wait = self.bucket_for(principal).acquire()
        if wait <= 0:
            return True
        self._wait = wait
        setattr(request, _REFUSED, True)
        metrics.record_rate_limit_hit(self.scope)
        return False

    def wait(self) -> float | None:
        return self._wait


class ApiKeyRateThrottle(_ChatThrottle):
    """HUB_CHAT_RATE_PER_KEY per API key."""

    scope = "api_key"

    def bucket_for(self, principal: ChannelPrincipal) -> TokenBucket:
        return bucket("key", principal.key_id, settings.HUB_CHAT_RATE_PER_KEY)


class TenantRateThrottle(_ChatThrottle):
    """HUB_CHAT_RATE_PER_TENANT per tenant, shared by all its keys and channels."""

    scope = "tenant"

    def bucket_for(self, principal: ChannelPrincipal) -> TokenBucket:
        return bucket("tenant", principal.tenant.id, settings.HUB_CHAT_RATE_PER_TENANT)


#: The throttles every chat API view lists, in this order.
CHAT_THROTTLES: tuple[type[BaseThrottle], ...] = (ApiKeyRateThrottle, TenantRateThrottle)


def chat_throttles() -> list[BaseThrottle]:
    """Fresh throttle instances for a view's `get_throttles()` (key first, then tenant)."""
    return [cls() for cls in CHAT_THROTTLES]
