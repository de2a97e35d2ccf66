"""Request rate limits over Redis token buckets, shared by the chat, widget and management APIs.

A limit of N requests per T seconds is a bucket of N tokens refilled at N/T per second: a burst of N, then a
steady N/T per second. The buckets of one request are charged in order in one Redis round trip, and a bucket
that refuses stops the charge, so a caller that keeps calling after its 429 spends nothing of the budgets
after it (its tenant's, shared with the tenant's other callers).

Without Redis (issue 15) the limits fail open for HUB_CHAT_RATE_FAIL_OPEN_SECONDS (default 60) from the
moment this process first saw the outage, then closed (503 with Retry-After): the limits protect capacity and
fairness, not secrets, so a short Redis blip must not stop the APIs; the web processes' worker count still
caps what one pod serves; and an outage longer than the window is not a blip, so the APIs do not stay
unlimited. (The login lockout counters, a brute-force guard, fail closed at once: apps/accounts.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis
from django.conf import settings

from apps.core.buckets import BucketConfig, TokenBucket, acquire_in_order
from apps.core.deadlines import DependencyUnavailable, redis_call, redis_health
from apps.observability import metrics


def rate_bucket(namespace: str, scope: str, ident: Any, rate: tuple[int, int]) -> TokenBucket:
    """The shared bucket of one caller or tenant for a (requests, seconds) rate, under an API's namespace."""
    requests, seconds = rate
    return TokenBucket(
        f"{scope}:{ident}",
        config=BucketConfig(capacity=requests, rate=requests / seconds),
        prefix=f"{settings.CACHES['default']['KEY_PREFIX']}:{namespace}",
    )


def rate_charge(buckets: Sequence[TokenBucket]) -> tuple[TokenBucket | None, float]:
    """Charge one request to `buckets` in order: (None, 0.0), or the bucket that refused and its wait.

    Redis unreachable: (None, 0.0) within the fail-open window (counted as degraded), DependencyUnavailable
    (503 with Retry-After) after it.
    """
    try:
        with redis_call():
            return acquire_in_order(buckets)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if redis_health.down_for() > settings.HUB_CHAT_RATE_FAIL_OPEN_SECONDS:
            raise DependencyUnavailable("redis", "rate limits cannot be checked") from exc
        metrics.record_degraded(dependency="redis", feature="rate_limit")
        return None, 0.0


def retry_after_seconds(wait: float) -> int:
    """The Retry-After of a refusal: whole seconds until a token is back, at least 1."""
    return max(1, math.ceil(wait))
