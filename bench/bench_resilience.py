"""Overhead of the per-connection circuit breaker and token bucket, next to a plain Redis GET.

Every guarded vendor call pays `before_call` + `record_success` (two Lua scripts) and usually one
`acquire` (one script); a vendor call takes tens of milliseconds, so these should cost well under a
millisecond. Measured single-threaded and with four threads (a worker's concurrency) against the dev Redis
(HUB_HOME), under a throwaway key prefix that is deleted afterwards.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

OPS = 5_000
THREADS = 4


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()


def _rate(ops: int, seconds: float) -> float:
    return round(ops / seconds, 1) if seconds > 0 else 0.0


def _timed(work: Callable[[], None], ops: int, threads: int) -> float:
    """Run `work` `ops` times in total across `threads` threads; return operations per second."""
    per_thread = ops // threads
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                work()
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=target) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return _rate(per_thread * threads, elapsed)


def run() -> dict[str, Any]:
    _setup_django()
    from django.conf import settings

    from apps.integrations.models import Connection
    from apps.integrations.resilience import RedisBreakerStore, breaker_for, bucket_for, redis_client

    client = redis_client()
    prefix = f"{settings.CACHES['default']['KEY_PREFIX']}:bench-resilience-{uuid.uuid4().hex}"
    connection = Connection(tenant_id=1, kind="salesforce", name="bench")
    breaker = breaker_for(connection, store=RedisBreakerStore(prefix=prefix))
    # A bucket that never runs dry, so every acquire is a grant (the common path).
    bucket = bucket_for(connection, capacity=1_000_000, rate=1_000_000.0, prefix=prefix)
    baseline_key = f"{prefix}:baseline"
    client.set(baseline_key, b"x" * 64)

    def guarded_call() -> None:
        breaker.before_call()
        breaker.record_success()

    def acquire() -> None:
        assert bucket.acquire() == 0.0

    def get() -> None:
        client.get(baseline_key)

    try:
        for work in (guarded_call, acquire, get):  # warm up connections and script caches
            _timed(work, 200, 1)
        result: dict[str, Any] = {"ops": OPS, "threads": THREADS}
        for threads in (1, THREADS):
            suffix = "1t" if threads == 1 else f"{threads}t"
            get_rate = _timed(get, OPS, threads)
            breaker_rate = _timed(guarded_call, OPS, threads)
            acquire_rate = _timed(acquire, OPS, threads)
            result |= {
                f"redis_get_ops_s_{suffix}": get_rate,
                f"breaker_before_call_record_success_ops_s_{suffix}": breaker_rate,
                f"bucket_acquire_ops_s_{suffix}": acquire_rate,
                # a guarded call is two round trips, an acquire one: ~0.5 and ~1.0 mean "Redis-bound"
                f"breaker_vs_get_{suffix}": round(breaker_rate / get_rate, 3),
                f"acquire_vs_get_{suffix}": round(acquire_rate / get_rate, 3),
                f"guarded_call_overhead_us_{suffix}": round(1e6 / breaker_rate + 1e6 / acquire_rate, 1),
            }
        assert breaker.state().state == "closed"
        return result
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
