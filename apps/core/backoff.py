"""Exponential backoff with full jitter, capped: the one copy every retrying app uses (sync, outbox, SIEM)."""

from __future__ import annotations

import random


def jittered_backoff(
    *, retries: int, base_ms: float, cap_seconds: float, retry_after: float | None = None
) -> float:
    """Seconds before retry number `retries + 1`: full jitter over an exponential ceiling, capped.

    `retry_after` is a floor, but the result never exceeds the cap.
    """
    cap = float(cap_seconds)
    ceiling = min(cap, base_ms / 1000 * 2 ** min(retries, 62))
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
    if retry_after:
        delay = max(delay, retry_after)
    return min(delay, cap)
