"""The retry policy of vendor work, in one place: sync runs, outbox deliveries and knowledge imports.

- Classification: a ConnectorError says whether it is permanent; the HTTP statuses worth another try
  (408, 409, 425, 429) retry although the connector called them permanent (CONVENTIONS.md, after Saleor).
  An open circuit breaker and an unreachable Redis (the shared quota and breaker state) are transient.
- Waiting: exponential backoff with full jitter, capped. A vendor's Retry-After (or the breaker's probe time)
  is a floor, since calling earlier is pointless, but never above the cap, which stays below the broker's
  visibility timeout so a waiting task is not redelivered twice. Sync runs (and knowledge imports) and
  outbox deliveries use the same function with their own base and cap settings, read at call time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core.backoff import jittered_backoff
from apps.integrations.models import ERROR_LIMIT
from apps.integrations.resilience import BreakerOpen
from connectors.errors import ConnectorError, RateLimited
from connectors.http import redact

#: HTTP statuses that are worth retrying although the connector called them permanent (CONVENTIONS.md).
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
#: A try that could not reach the shared quota and breaker (Redis stalled or down) is retried like a blip.
REDIS_UNAVAILABLE = "Redis (the shared quota and breaker state) was unavailable; retrying."
BREAKER_OPEN = "The vendor is failing; the circuit breaker is open until it probes again."


def is_transient(exc: ConnectorError) -> bool:
    """Tell whether retrying can help: the error type says so, or the status is one worth retrying."""
    return not exc.permanent or exc.status in RETRYABLE_STATUSES


def retry_after_of(exc: BaseException) -> float | None:
    """The wait a vendor asked for (Retry-After, a quota's reset), None when it asked for none."""
    return exc.retry_after if isinstance(exc, RateLimited) else None


def sync_retry_delay(*, retries: int, retry_after: float | None = None) -> float:
    """Seconds before retry number `retries + 1` of a sync run or a knowledge import (HUB_SYNC_RETRY_*)."""
    return jittered_backoff(
        retries=retries,
        base_ms=settings.HUB_SYNC_RETRY_BASE_MS,
        cap_seconds=settings.HUB_SYNC_RETRY_MAX_SECONDS,
        retry_after=retry_after,
    )


def outbox_retry_delay(*, attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next try of an outbox message after `attempts` tries (HUB_OUTBOX_RETRY_*)."""
    return jittered_backoff(
        retries=max(attempts - 1, 0),
        base_ms=settings.HUB_OUTBOX_RETRY_BASE_MS,
        cap_seconds=settings.HUB_OUTBOX_RETRY_MAX_SECONDS,
        retry_after=retry_after,
    )


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed vendor call as a run, an attempt or a message records it."""

    message: str
    transient: bool
    retry_after: float | None


def failure_of(exc: ConnectorError | BreakerOpen | RedisError, *, secrets: Iterable[str] = ()) -> Failure:
    """Classify a failed vendor call; the vendor's message is stripped of `secrets` and cut to ERROR_LIMIT."""
    if isinstance(exc, BreakerOpen):
        return Failure(BREAKER_OPEN, True, max(0.0, (exc.retry_at - timezone.now()).total_seconds()))
    if isinstance(exc, RedisError):
        return Failure(REDIS_UNAVAILABLE, True, None)
    return Failure(redact(exc.message, secrets)[:ERROR_LIMIT], is_transient(exc), retry_after_of(exc))
