"""The circuit breaker: transitions, the single half-open probe, sharing across processes, isolation."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import pytest

from apps.integrations.models import Connection
from apps.integrations.resilience import (
    BreakerConfig,
    BreakerOpen,
    CircuitBreaker,
    RedisBreakerStore,
    breaker_for,
    guarded,
)
from connectors.errors import ConnectorError, InvalidConfig, RateLimited, VendorUnavailable
from tests.resilience import _workers

MakeConnection = Callable[..., Connection]

#: Thresholds small enough that no test sleeps for long (the production default cool-down is 30 s).
FAST: dict[str, Any] = {"failure_threshold": 3, "cooldown": 0.2, "max_cooldown": 0.5, "probe_timeout": 0.3}


@pytest.fixture
def breaker(store: RedisBreakerStore, make_connection: MakeConnection) -> CircuitBreaker:
    return breaker_for(make_connection(), store=store, **FAST)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.failure_threshold):
        breaker.record_failure()
    assert breaker.state().state == "open"


def wait_until_probe_due(breaker: CircuitBreaker) -> None:
    retry_at = breaker.state().retry_at
    assert retry_at is not None
    time.sleep(max(0.0, (retry_at - datetime.now(UTC)).total_seconds()) + 0.05)


def test_opens_after_consecutive_failures(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state().state == "closed"
    assert breaker.state().failures == 2
    breaker.before_call()
    breaker.record_failure()

    state = breaker.state()
    assert state.state == "open"
    assert state.failures == 3
    assert state.opened_at is not None and state.retry_at is not None
    assert (state.retry_at - state.opened_at).total_seconds() == pytest.approx(0.2, abs=0.001)
    with pytest.raises(BreakerOpen) as info:
        breaker.before_call()
    assert info.value.retry_at == state.retry_at
    assert breaker.name in str(info.value)


def test_a_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    for outcome in (False, False, True, False, False, True, False, False):
        (breaker.record_success if outcome else breaker.record_failure)()
    assert breaker.state().state == "closed"
    assert breaker.state().failures == 2


def test_opens_on_error_ratio_once_the_window_is_full_enough(
    store: RedisBreakerStore, make_connection: MakeConnection
) -> None:
    breaker = breaker_for(make_connection(), store=store, failure_threshold=100, cooldown=0.2)
    # Alternating outcomes never reach 100 consecutive failures but fail half of all calls.
    for i in range(9):
        (breaker.record_failure if i % 2 == 0 else breaker.record_success)()
    assert breaker.state().state == "closed", "9 calls are below min_calls=10"
    breaker.record_success()  # 10 calls, 5 failures, but a success never opens
    assert breaker.state().state == "closed"
    breaker.record_failure()  # 6 of the last 11
    assert breaker.state().state == "open"


def test_ratio_counts_only_the_rolling_window(
    store: RedisBreakerStore, make_connection: MakeConnection
) -> None:
    breaker = breaker_for(make_connection(), store=store, failure_threshold=100, window=10, min_calls=10)
    for _ in range(4):
        breaker.record_failure()
    for _ in range(20):
        breaker.record_success()  # pushes the old failures out of the 10-call window
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state().state == "closed", "4 failures in the last 10 calls"
    breaker.record_failure()
    assert breaker.state().state == "open"


def test_cooldown_then_one_probe_then_closed(breaker: CircuitBreaker) -> None:
    trip(breaker)
    with pytest.raises(BreakerOpen):
        breaker.before_call()
    wait_until_probe_due(breaker)
    assert breaker.state().state == "half_open", "the console shows that the next call probes"

    breaker.before_call()  # the probe
    with pytest.raises(BreakerOpen) as info:
        breaker.before_call()
    # others look again after at most one cool-down, not after the probe's whole claim
    assert (info.value.retry_at - datetime.now(UTC)).total_seconds() <= 0.2 + 0.01

    breaker.record_success()
    state = breaker.state()
    assert (state.state, state.failures, state.opened_at, state.retry_at) == ("closed", 0, None, None)
    breaker.before_call()


def test_probe_failure_reopens_with_exponential_cooldown_up_to_the_cap(breaker: CircuitBreaker) -> None:
    def cooldown() -> float:
        state = breaker.state()
        assert state.state == "open" and state.retry_at and state.opened_at
        return (state.retry_at - state.opened_at).total_seconds()

    trip(breaker)
    seen = [cooldown()]
    for _ in range(2):
        wait_until_probe_due(breaker)
        breaker.before_call()
        breaker.record_failure()
        seen.append(cooldown())
    assert seen == pytest.approx([0.2, 0.4, 0.5], abs=0.001)  # doubled, then capped by max_cooldown

    wait_until_probe_due(breaker)
    breaker.before_call()
    breaker.record_success()
    trip(breaker)
    assert cooldown() == pytest.approx(0.2, abs=0.001), "closing resets the back-off"


def test_late_outcomes_while_open_change_nothing(breaker: CircuitBreaker) -> None:
    trip(breaker)
    before = breaker.state()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state() == before


@pytest.fixture
def slow_probe(store: RedisBreakerStore, make_connection: MakeConnection) -> CircuitBreaker:
    """A probe claim that outlives a slow start of the racers, so the race is only about the claim."""
    return breaker_for(make_connection(), store=store, **{**FAST, "probe_timeout": 30.0})


def test_exactly_one_probe_among_eight_threads(slow_probe: CircuitBreaker) -> None:
    breaker = slow_probe
    trip(breaker)
    wait_until_probe_due(breaker)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait(timeout=30)
        try:
            breaker.before_call()
            result = "probe"
        except BreakerOpen:
            result = "denied"
        with lock:
            outcomes.append(result)

    pool = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert sorted(outcomes) == ["denied"] * 7 + ["probe"]


def test_exactly_one_probe_across_two_processes(slow_probe: CircuitBreaker, store: RedisBreakerStore) -> None:
    breaker = slow_probe
    trip(breaker)
    wait_until_probe_due(breaker)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    config = dataclasses.asdict(breaker.config)
    job = (_workers.race_for_probe, (store.prefix, breaker.name, config, 4, barrier, results))
    _workers.spawn([job, job], ctx=ctx)
    outcomes = sorted(results.get(timeout=10) for _ in range(8))
    assert outcomes == ["denied"] * 7 + ["probe"]
    assert breaker.state().state == "half_open"


def test_a_failure_recorded_in_another_process_opens_it_here(
    store: RedisBreakerStore, make_connection: MakeConnection
) -> None:
    # A cool-down longer than spawning a process takes, so the breaker is still open when we look.
    breaker = breaker_for(make_connection(), store=store, failure_threshold=3, cooldown=30)
    for _ in range(2):
        breaker.record_failure()
    ctx = multiprocessing.get_context("spawn")
    config = dataclasses.asdict(breaker.config)
    _workers.spawn([(_workers.record_failures, (store.prefix, breaker.name, config, 1))], ctx=ctx)
    assert breaker.state().state == "open"
    with pytest.raises(BreakerOpen):
        breaker.before_call()


def test_a_crashed_probe_releases_after_its_expiry(breaker: CircuitBreaker, store: RedisBreakerStore) -> None:
    trip(breaker)
    wait_until_probe_due(breaker)
    ctx = multiprocessing.get_context("spawn")
    config = dataclasses.asdict(breaker.config)
    _workers.spawn([(_workers.claim_probe_and_die, (store.prefix, breaker.name, config))], ctx=ctx)
    state = breaker.state()
    assert state.state == "half_open"
    assert state.retry_at is not None
    remaining = (state.retry_at - datetime.now(UTC)).total_seconds()
    if remaining > 0.02:  # spawning can take longer than probe_timeout; then the claim has lapsed already
        with pytest.raises(BreakerOpen):
            breaker.before_call()
    time.sleep(max(0.0, remaining) + 0.05)
    breaker.before_call()  # the claim lapsed: this caller is the new probe
    breaker.record_success()
    assert breaker.state().state == "closed"


def test_a_probe_claim_lapses_in_process_too(breaker: CircuitBreaker) -> None:
    trip(breaker)
    wait_until_probe_due(breaker)
    breaker.before_call()
    with pytest.raises(BreakerOpen):
        breaker.before_call()
    time.sleep(breaker.config.probe_timeout + 0.05)
    breaker.before_call()


def test_breakers_are_per_tenant_and_connection(
    store: RedisBreakerStore, make_connection: MakeConnection
) -> None:
    failing = make_connection(tenant_id=1)
    sibling = make_connection(tenant_id=1)  # same tenant, other connection
    other_tenant = Connection(
        tenant_id=2, id=failing.id, kind=failing.kind, name="x"
    )  # same id, other tenant
    trip(breaker_for(failing, store=store, **FAST))
    for connection in (sibling, other_tenant):
        breaker = breaker_for(connection, store=store, **FAST)
        breaker.before_call()
        assert breaker.state().state == "closed"
    with pytest.raises(BreakerOpen):
        breaker_for(failing, store=store, **FAST).before_call()


def test_defaults_come_from_settings(settings: Any, make_connection: MakeConnection) -> None:
    breaker = breaker_for(make_connection())
    assert (breaker.config.failure_threshold, breaker.config.cooldown) == (5, 30.0)
    assert breaker.config.max_cooldown == 300.0
    assert (breaker.config.error_ratio, breaker.config.window, breaker.config.min_calls) == (0.5, 20, 10)
    settings.HUB_BREAKER_FAILURE_THRESHOLD = 7
    settings.HUB_BREAKER_COOLDOWN_SECONDS = 12
    config = breaker_for(make_connection()).config
    assert (config.failure_threshold, config.cooldown, config.max_cooldown) == (7, 12.0, 120.0)
    assert breaker_for(make_connection(), failure_threshold=2).config.failure_threshold == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_threshold": 0},
        {"error_ratio": 0},
        {"error_ratio": 1.5},
        {"min_calls": 30},
        {"cooldown": 0},
        {"cooldown": 10, "max_cooldown": 5},
        {"probe_timeout": 0},
    ],
)
def test_nonsense_thresholds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerConfig(**bad)  # type: ignore[arg-type]


def test_guarded_feeds_transient_failures_and_counts_answers_as_success(breaker: CircuitBreaker) -> None:
    def call(exc: Exception | None) -> None:
        expect: AbstractContextManager[Any] = pytest.raises(type(exc)) if exc else nullcontext()
        with expect, guarded(breaker):
            if exc:
                raise exc

    call(VendorUnavailable("down"))
    call(VendorUnavailable("down"))
    assert breaker.state().failures == 2
    call(InvalidConfig("bad field"))  # the vendor answered: permanent errors are not outages
    call(RateLimited("slow down", retry_after=1))  # limits are the bucket's business
    assert breaker.state().failures == 0
    call(None)
    call(ValueError("our own bug"))  # records nothing
    for _ in range(3):
        call(ConnectorError("timeout", permanent=False))
    assert breaker.state().state == "open"
    with pytest.raises(BreakerOpen), guarded(breaker):
        pytest.fail("a refused call must not run")
