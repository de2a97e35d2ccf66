"""Code run in spawned processes (a fork of the multi-threaded test process would be unsafe)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.test")
    import django

    django.setup()


def _breaker(prefix: str, name: str, config: dict[str, Any]) -> Any:
    from apps.integrations.resilience import BreakerConfig, CircuitBreaker, RedisBreakerStore

    return CircuitBreaker(name, config=BreakerConfig(**config), store=RedisBreakerStore(prefix=prefix))


def race_for_probe(
    prefix: str, name: str, config: dict[str, Any], threads: int, barrier: Any, results: Any
) -> None:
    """Let `threads` threads call before_call at the same moment; report 'probe' or 'denied' for each."""
    _setup()
    from apps.integrations.resilience import BreakerOpen

    breaker = _breaker(prefix, name, config)
    breaker.state()  # connect before the barrier, so the race is about the script, not connection set-up

    def attempt() -> None:
        barrier.wait(timeout=60)
        try:
            breaker.before_call()
        except BreakerOpen:
            results.put("denied")
        else:
            results.put("probe")

    pool = [threading.Thread(target=attempt) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def record_failures(prefix: str, name: str, config: dict[str, Any], count: int) -> None:
    _setup()
    breaker = _breaker(prefix, name, config)
    for _ in range(count):
        breaker.record_failure()


def claim_probe_and_die(prefix: str, name: str, config: dict[str, Any]) -> None:
    """Take the half-open probe and vanish without recording an outcome, like a SIGKILLed worker."""
    _setup()
    _breaker(prefix, name, config).before_call()
    os._exit(0)


def hammer_bucket(
    prefix: str, key: str, capacity: int, rate: float, seconds: float, start: Any, results: Any
) -> None:
    """Acquire as fast as possible for `seconds`; report how many tokens were granted."""
    _setup()
    from apps.integrations.resilience import BucketConfig, TokenBucket

    bucket = TokenBucket(key, config=BucketConfig(capacity=capacity, rate=rate), prefix=prefix)
    bucket.client.ping()
    start.wait(timeout=60)
    granted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        wait = bucket.acquire()
        if wait == 0.0:
            granted += 1
        else:
            time.sleep(min(wait, 0.002))
    results.put(granted)


def spawn(jobs: list[tuple[Any, tuple[Any, ...]]], *, ctx: Any) -> None:
    """Start one process per (function, args), wait for all, and fail if any of them failed."""
    procs = [ctx.Process(target=target, args=args) for target, args in jobs]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    codes = [proc.exitcode for proc in procs]
    assert codes == [0] * len(procs), f"worker exit codes {codes}"
