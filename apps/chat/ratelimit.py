"""Chat API rate limits per API key and per tenant, as a DRF throttle over Redis token buckets.

The buckets and their Redis-down policy are apps/core/ratelimit.py's, shared with the management API. A
refused request gets 429, `Retry-After` (whole seconds until a token is back) and a JSON message.

Order matters: the key's bucket is checked first, and a request it refuses is not charged to the tenant, so
one misbehaving key that keeps calling after its 429 cannot starve the tenant's other channels.

Without Redis the limits fail open for a bounded window, then closed (apps/core/ratelimit.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.chat.principal import ChannelPrincipal
from apps.core.buckets import TokenBucket
from apps.core.ratelimit import rate_bucket, rate_charge
from apps.observability import metrics


def bucket(scope: str, ident: Any, rate: tuple[int, int]) -> TokenBucket:
    """The shared bucket of one key, visitor or tenant of the chat and widget APIs."""
    return rate_bucket("chat-rate", scope, ident, rate)


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
        refused, wait = rate_charge([per_key, per_tenant])
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
