"""The token bucket: grants, wait times, penalties shared by all workers, a bound under multi-process load."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable

import pytest

from apps.integrations.models import Connection
from apps.integrations.resilience import VENDOR_RATES, BucketConfig, TokenBucket, bucket_for
from tests.resilience import _workers

MakeConnection = Callable[..., Connection]


def redis_now(bucket: TokenBucket) -> float:
    seconds, micros = bucket.client.time()
    return seconds + micros / 1_000_000


def test_grants_up_to_capacity_then_says_how_long_to_wait(
    prefix: str, make_connection: MakeConnection
) -> None:
    bucket = bucket_for(make_connection(), capacity=5, rate=10.0, prefix=prefix)
    assert [bucket.acquire() for _ in range(5)] == [0.0] * 5
    wait = bucket.acquire()
    assert 0.05 < wait <= 0.1
    assert 0.25 < bucket.acquire(3) <= 0.3
    time.sleep(wait + 0.01)
    assert bucket.acquire() == 0.0


def test_a_refusal_consumes_nothing(prefix: str, make_connection: MakeConnection) -> None:
    bucket = bucket_for(make_connection(), capacity=4, rate=2.0, prefix=prefix)
    assert bucket.acquire(3) == 0.0
    for _ in range(20):
        assert bucket.acquire(4) > 0  # asks for more than there is, repeatedly
    assert bucket.acquire(1) == 0.0, "the remaining token is still there"


def test_refills_at_the_rate_and_never_above_capacity(prefix: str, make_connection: MakeConnection) -> None:
    bucket = bucket_for(make_connection(), capacity=3, rate=20.0, prefix=prefix)
    for _ in range(3):
        assert bucket.acquire() == 0.0
    time.sleep(0.5)  # 10 tokens' worth of time, but the bucket holds 3
    assert [bucket.acquire() == 0.0 for _ in range(4)] == [True, True, True, False]


def test_penalize_blocks_every_worker_then_refills(prefix: str, make_connection: MakeConnection) -> None:
    connection = make_connection(kind="hubspot")
    mine, theirs = (bucket_for(connection, prefix=prefix) for _ in range(2))  # two workers, one connection
    assert mine.acquire() == 0.0
    mine.penalize(0.3)
    wait = theirs.acquire()
    assert 0.3 < wait <= 0.3 + 1 / theirs.config.rate + 0.01
    mine.penalize(0.05)  # a shorter penalty never shortens a longer one
    assert theirs.acquire() > 0.25
    time.sleep(wait + 0.01)
    assert theirs.acquire() == 0.0
    assert theirs.acquire() > 0, "after a penalty the bucket refills from empty, not from full"


def test_buckets_are_per_connection(prefix: str, make_connection: MakeConnection) -> None:
    first, second = make_connection(), make_connection()
    bucket_for(first, prefix=prefix).penalize(60)
    assert bucket_for(first, prefix=prefix).acquire() > 59
    assert bucket_for(second, prefix=prefix).acquire() == 0.0


def test_vendor_defaults_by_kind(make_connection: MakeConnection) -> None:
    hubspot = bucket_for(make_connection(kind="hubspot")).config
    # at most 100 calls in any rolling 10 s: HubSpot's smallest ten-secondly tier
    assert hubspot.capacity + hubspot.rate * 10 <= 100
    assert bucket_for(make_connection(kind="salesforce")).config == VENDOR_RATES["salesforce"]
    assert bucket_for(make_connection(kind="sap")).config.rate == 10.0
    assert bucket_for(make_connection(kind="unknown")).config == BucketConfig(capacity=10, rate=10.0)
    assert bucket_for(make_connection(kind="sap"), rate=2.5).config == BucketConfig(capacity=10, rate=2.5)


def test_refuses_impossible_requests(prefix: str, make_connection: MakeConnection) -> None:
    bucket = bucket_for(make_connection(), capacity=5, rate=1.0, prefix=prefix)
    with pytest.raises(ValueError, match="cannot acquire"):
        bucket.acquire(6)
    with pytest.raises(ValueError, match="cannot acquire"):
        bucket.acquire(0)
    with pytest.raises(ValueError, match="retry_after_s"):
        bucket.penalize(float("nan"))
    with pytest.raises(ValueError, match="capacity"):
        BucketConfig(capacity=0, rate=1.0)


def test_processes_together_never_exceed_capacity_plus_refill(prefix: str) -> None:
    capacity, rate, seconds, workers = 20, 200.0, 1.5, 4
    key = f"load-{uuid.uuid4().hex}"
    probe = TokenBucket(key, config=BucketConfig(capacity=capacity, rate=rate), prefix=prefix)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(workers + 1), ctx.Queue()
    job = (_workers.hammer_bucket, (prefix, key, capacity, rate, seconds, start, results))
    procs = [ctx.Process(target=job[0], args=job[1]) for _ in range(workers)]
    for proc in procs:
        proc.start()
    began = redis_now(probe)  # the bucket is created by the first acquire, after this
    start.wait(timeout=120)  # every worker is set up: they start together
    granted = sum(results.get(timeout=120) for _ in range(workers))
    elapsed = redis_now(probe) - began
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    bound = capacity + rate * elapsed
    assert granted <= bound
    # and the bucket is not merely refusing everything
    assert granted >= 0.5 * (capacity + rate * seconds)


def test_acquire_in_order_stops_at_the_first_refusal_and_charges_only_the_buckets_before_it(
    prefix: str,
) -> None:
    from apps.core.buckets import acquire_in_order

    tag = uuid.uuid4().hex
    first = TokenBucket(f"{tag}:first", config=BucketConfig(capacity=2, rate=0.001), prefix=prefix)
    second = TokenBucket(f"{tag}:second", config=BucketConfig(capacity=3, rate=0.001), prefix=prefix)
    assert acquire_in_order([first, second]) == (None, 0.0)
    assert acquire_in_order([first, second]) == (None, 0.0)
    refused, wait = acquire_in_order([first, second])
    assert refused is first and 900 < wait <= 1000  # 1 token at 0.001/s
    assert second.acquire() == 0.0, "the refused request was not charged to the second bucket"
    assert second.acquire() > 0
    third = TokenBucket(f"{tag}:third", config=BucketConfig(capacity=5, rate=0.001), prefix=prefix)
    refused, _wait = acquire_in_order([third, second])
    assert refused is second
    assert [third.acquire() == 0.0 for _ in range(5)] == [True] * 4 + [False], (
        "the first bucket kept its token"
    )
    assert acquire_in_order([]) == (None, 0.0)
    with pytest.raises(ValueError, match="cannot acquire 4 tokens"):
        acquire_in_order([first, second], 4)
