"""The one retry policy of sync runs, outbox deliveries and knowledge imports (apps/integrations/retry.py)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.integrations.models import ERROR_LIMIT
from apps.integrations.resilience import BreakerOpen
from apps.integrations.retry import (
    BREAKER_OPEN,
    REDIS_UNAVAILABLE,
    failure_of,
    jittered_backoff,
    outbox_retry_delay,
    sync_retry_delay,
)
from connectors.errors import AuthFailed, ConnectorError, RateLimited, VendorUnavailable


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (VendorUnavailable("503 from the vendor"), True),
        (AuthFailed("bad credentials"), False),
        (ConnectorError("bad field", status=400), False),
        # Statuses worth another try although the connector called them permanent.
        (ConnectorError("timeout", status=408), True),
        (ConnectorError("conflict", status=409), True),
        (ConnectorError("too early", status=425), True),
        (ConnectorError("slow down", status=429), True),
    ],
)
def test_connector_errors_are_classified_by_type_and_status(exc: ConnectorError, transient: bool) -> None:
    assert failure_of(exc).transient is transient


def test_a_rate_limit_carries_the_vendors_wait() -> None:
    failure = failure_of(RateLimited("quota used up", retry_after=42.0))
    assert (failure.transient, failure.retry_after) == (True, 42.0)


def test_an_open_breaker_is_transient_until_its_probe_time() -> None:
    failure = failure_of(BreakerOpen(timezone.now() + timedelta(seconds=30), name="x"))
    assert failure.message == BREAKER_OPEN and failure.transient
    assert failure.retry_after is not None and 28 < failure.retry_after <= 30
    past = failure_of(BreakerOpen(timezone.now() - timedelta(seconds=5)))
    assert past.retry_after == 0.0


def test_redis_away_is_transient_without_a_wait() -> None:
    assert failure_of(RedisConnectionError("gone")) == failure_of(RedisConnectionError("other"))
    assert failure_of(RedisConnectionError("gone")).message == REDIS_UNAVAILABLE


def test_the_vendor_message_is_redacted_and_bounded() -> None:
    failure = failure_of(ConnectorError("token s3cr3t-value refused " + "x" * 5000), secrets=["s3cr3t-value"])
    assert "s3cr3t-value" not in failure.message and "***" in failure.message
    assert len(failure.message) == ERROR_LIMIT


def test_sync_and_outbox_delays_are_one_backoff_with_their_own_settings(settings: Any) -> None:
    settings.HUB_SYNC_RETRY_BASE_MS, settings.HUB_SYNC_RETRY_MAX_SECONDS = 500, 30
    settings.HUB_OUTBOX_RETRY_BASE_MS, settings.HUB_OUTBOX_RETRY_MAX_SECONDS = 500, 30
    for retries in range(8):
        random.seed(retries)
        expected = jittered_backoff(retries=retries, base_ms=500, cap_seconds=30)
        random.seed(retries)
        assert sync_retry_delay(retries=retries) == expected
        random.seed(retries)
        # An outbox message's first retry follows its first try: attempts = retries + 1.
        assert outbox_retry_delay(attempts=retries + 1) == expected


def test_retry_after_is_a_floor_under_the_cap() -> None:
    floor = [jittered_backoff(retries=0, base_ms=1000, cap_seconds=60, retry_after=30) for _ in range(20)]
    assert min(floor) >= 30
    assert jittered_backoff(retries=40, base_ms=1000, cap_seconds=60, retry_after=3600) == 60
    assert all(jittered_backoff(retries=2, base_ms=1000, cap_seconds=60) <= 4 for _ in range(50))
