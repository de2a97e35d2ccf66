"""Redis and Postgres stall, die and come back while chat traffic runs against a real gunicorn (issue 15).

Each scenario starts a gunicorn (3 sync workers) on this run's test databases, runs 3 client threads sending
chat turns back to back (tests/chaos/faults.py: ChatLoad), injects one fault for a few seconds and asserts:

- no 500 and no unanswered request: every turn is answered, within its deadline plus a margin;
- every 503 carries Retry-After; /healthz stays 200; /readyz flips to 503 during the fault and back after;
- after the dependency returns, turns are answered (200) again within seconds;
- nothing acknowledged is lost, nothing stored twice: each turn answered 200 is stored exactly once, and each
  turn answered 503 is either not stored or, retried with its Idempotency-Key, answered with what was stored
  (the documented contract, docs/operations.md): after the retries the stored turns are exactly the ones
  acknowledged.

What the client sees differs by dependency, as docs/operations.md says: without Redis the chat keeps answering
(API keys from the database, no answer cache, rate limits open for HUB_CHAT_RATE_FAIL_OPEN_SECONDS, then 503);
without the region's Postgres every turn of that region gets 503 fast, other regions are unaffected.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connections

from apps.chat.models import Message
from apps.chat.services.channels import channel_create
from apps.tenants.models import Tenant
from tests.chaos.faults import (
    Answer,
    ChatLoad,
    StallProxy,
    paused,
    redis_kill,
    redis_restart,
    service_pids,
)
from tests.fixtures.chat import IssuedKey, issue_key
from tests.fixtures.processes import Web

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEADLINE_S = 60  # per scenario; a hang fails the test instead of blocking the suite
# The servers' budgets, short so the scenarios stay short: a statement may run 1 s, the client severs a
# stalled call 0.5 s later, a new connection gives up after libpq's 2 s.
BUDGET_ENV = {
    "HUB_DB_STATEMENT_TIMEOUT_CHAT_MS": "1000",
    "HUB_DB_CLIENT_GRACE_MS": "500",
    "HUB_READYZ_CACHE_SECONDS": "1",
}
# The longest a turn may take while a dependency is down: twice the worst budget (sever + reconnect).
TURN_LIMIT_S = 2 * (1.0 + 0.5 + 2.0)
FAULT_S = 6.0
# Turns started this long before the dependency returned may still have been answered by it.
LATE_S = 3.0


@pytest.fixture
def web_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Web] = []

    def start(**env: str) -> Web:
        web = Web(tmp_path / f"web{len(started)}.log", sync_workers=3, env={**BUDGET_ENV, **env})
        started.append(web)
        web.start()
        web.wait_ready(time.monotonic() + 45)
        return web

    yield start
    for web in started:
        web.stop()
    connections.close_all()


def key_of(tenant: Tenant) -> IssuedKey:
    return issue_key(channel_create(tenant=tenant, name="Website", kind="web"))


def wait_ready(web: Web, want: int, deadline: float) -> float:
    """Poll /readyz until it answers `want`; the seconds that took."""
    started = time.monotonic()
    while (status := web.ready()[0]) != want:
        assert time.monotonic() < deadline, f"/readyz stayed {status}, wanted {want}; see {web.log}"
        time.sleep(0.2)
    return time.monotonic() - started


def assert_answered(answers: list[Answer], log: Path) -> None:
    """No 500, nothing unanswered, nothing over the limit, and every 503 says when to retry."""
    assert answers, "no traffic"
    bad = [a for a in answers if a.status is None or (a.status >= 500 and a.status != 503)]
    assert not bad, f"{bad[:3]}; see {log}"
    slow = [a for a in answers if a.seconds > TURN_LIMIT_S]
    assert not slow, f"over {TURN_LIMIT_S} s: {slow[:3]}"
    for answer in answers:
        if answer.status == 503:
            assert answer.retry_after and answer.retry_after.isdigit(), answer
            assert "detail" in answer.body and "Traceback" not in answer.body, answer.body
        else:
            assert answer.status == 200, answer


def assert_recovers(load: ChatLoad, moment: float, deadline: float) -> float:
    """Seconds after `moment` until turns are answered 200 again (three in a row)."""
    while True:
        recent = [a for a in load.since(moment) if a.status is not None]
        if len(recent) >= 3 and all(a.status == 200 for a in recent[-3:]):
            return recent[-3].started - moment
        assert time.monotonic() < deadline, f"no recovery: {recent[-3:]}"
        time.sleep(0.2)


RETRIES = 5  # per 503, when checking that nothing is lost


def assert_exactly_once(load: ChatLoad, tenant: Tenant) -> collections.Counter[int | None]:
    """Retry every 503 with its key as a channel would (honouring Retry-After, a few times: another web
    process may still be inside its moment of skipping Redis); then stored == acknowledged, once each."""
    acknowledged = {a.key for a in load.answers if a.status == 200}
    for answer in [a for a in load.answers if a.status == 503]:
        for _attempt in range(RETRIES):
            retried = load.turn(answer.conversation_id, answer.key)
            if retried.status != 503:
                break
            time.sleep(min(float(retried.retry_after or 1), 2.0))
        assert retried.status == 200, retried
        acknowledged.add(answer.key)
    stored = collections.Counter(
        Message.all_tenants.using(tenant.home_region.db_alias)
        .filter(conversation_id__in=load.conversations, role="user")
        .values_list("idempotency_key", flat=True)
    )
    assert set(stored) == acknowledged
    assert max(stored.values()) == 1
    return collections.Counter(a.status for a in load.answers)


def healthz(web: Web) -> int:
    return requests.get(f"{web.url}/healthz", timeout=5).status_code


def test_redis_paused_chat_degrades_and_recovers(
    tenant_a: Tenant, web_factory: Any, record_property: Any
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    web = web_factory()
    with ChatLoad(web.url, key_of(tenant_a).plaintext) as load:
        time.sleep(1.5)
        stalled_at = time.monotonic()
        with paused(service_pids("redis"), limit=FAULT_S + 10):
            flip = wait_ready(web, 503, deadline)
            assert healthz(web) == 200
            time.sleep(max(0.0, FAULT_S - (time.monotonic() - stalled_at)))
        resumed_at = time.monotonic()
        back = wait_ready(web, 200, deadline)
        recovery = assert_recovers(load, resumed_at, deadline)
    during = [a for a in load.answers if stalled_at <= a.started < resumed_at]
    assert_answered(load.answers, web.log)
    # Without Redis the turns are still answered: keys from the database, rate limits open for a while.
    assert during and all(a.status == 200 for a in during), during[:3]
    statuses = assert_exactly_once(load, tenant_a)
    record_property("readyz_flip_s", round(flip, 2))
    record_property("readyz_back_s", round(back, 2))
    record_property("recovery_s", round(recovery, 2))
    record_property("statuses", dict(statuses))
    record_property("worst_turn_during_s", round(max(a.seconds for a in during), 2))


def test_redis_killed_rate_limits_close_then_recover_after_restart(
    tenant_a: Tenant, web_factory: Any, record_property: Any
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    web = web_factory(HUB_CHAT_RATE_FAIL_OPEN_SECONDS="1")
    with ChatLoad(web.url, key_of(tenant_a).plaintext) as load:
        time.sleep(1.5)
        killed_at = time.monotonic()
        try:
            redis_kill()
            flip = wait_ready(web, 503, deadline)
            assert healthz(web) == 200
            time.sleep(FAULT_S)
        finally:
            restarting_at = time.monotonic()
            redis_restart()
        restarted_at = time.monotonic()
        back = wait_ready(web, 200, deadline)
        recovery = assert_recovers(load, restarted_at, deadline)
    assert_answered(load.answers, web.log)
    during = [a for a in load.answers if killed_at + 2.5 <= a.started < restarting_at]
    # Past the fail-open window (1 s here) the rate limits fail closed: 503 with Retry-After.
    assert during and all(a.status == 503 for a in during), during[:3]
    statuses = assert_exactly_once(load, tenant_a)
    record_property("readyz_flip_s", round(flip, 2))
    record_property("readyz_back_s", round(back, 2))
    record_property("recovery_s", round(recovery, 2))
    record_property("statuses", dict(statuses))


def test_one_region_database_stalled_fails_that_region_fast(
    tenant_a: Tenant, tenant_b: Tenant, web_factory: Any, record_property: Any
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    eu = tenant_a.home_region.db_alias
    proxy = StallProxy(int(settings.DATABASES[eu]["PORT"]))
    try:
        web = web_factory(HUB_TEST_DB_PORTS=f"{eu}={proxy.port}")
        load_us = ChatLoad(web.url, key_of(tenant_b).plaintext, clients=1)
        with ChatLoad(web.url, key_of(tenant_a).plaintext) as load_eu, load_us:
            time.sleep(1.5)
            stalled_at = time.monotonic()
            proxy.stall()
            flip = wait_ready(web, 503, deadline)
            assert healthz(web) == 200
            time.sleep(max(0.0, FAULT_S - (time.monotonic() - stalled_at)))
            proxy.resume()
            resumed_at = time.monotonic()
            back = wait_ready(web, 200, deadline)
            recovery = assert_recovers(load_eu, resumed_at, deadline)
        assert_answered(load_eu.answers, web.log)
        assert_answered(load_us.answers, web.log)
        during = [a for a in load_eu.answers if stalled_at + 0.2 <= a.started < resumed_at - LATE_S]
        assert during and all(a.status == 503 for a in during), during[:3]
        assert all(a.status == 200 for a in load_us.answers), "the other region must not notice"
        statuses = assert_exactly_once(load_eu, tenant_a)
        assert_exactly_once(load_us, tenant_b)
    finally:
        proxy.close()
    record_property("readyz_flip_s", round(flip, 2))
    record_property("recovery_s", round(recovery, 2))
    record_property("readyz_back_s", round(back, 2))
    record_property("statuses", dict(statuses))
    record_property("worst_turn_s", round(max(a.seconds for a in load_eu.answers), 2))
    record_property(
        "us_turns_during", len([a for a in load_us.answers if stalled_at <= a.started < resumed_at])
    )


def test_all_postgres_paused_answers_503_fast_and_recovers(
    tenant_a: Tenant, web_factory: Any, record_property: Any
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    web = web_factory()
    with ChatLoad(web.url, key_of(tenant_a).plaintext) as load:
        time.sleep(1.5)
        connections.close_all()  # this process must not hold a connection into the pause
        stalled_at = time.monotonic()
        with paused(service_pids("postgres"), limit=FAULT_S + 15):
            flip = wait_ready(web, 503, deadline)
            assert healthz(web) == 200
            time.sleep(max(0.0, FAULT_S - (time.monotonic() - stalled_at)))
        resumed_at = time.monotonic()
        back = wait_ready(web, 200, deadline)
        recovery = assert_recovers(load, resumed_at, deadline)
    assert_answered(load.answers, web.log)
    during = [a for a in load.answers if stalled_at + 0.2 <= a.started < resumed_at - LATE_S]
    assert during and all(a.status == 503 for a in during), during[:3]
    statuses = assert_exactly_once(load, tenant_a)
    record_property("readyz_flip_s", round(flip, 2))
    record_property("readyz_back_s", round(back, 2))
    record_property("recovery_s", round(recovery, 2))
    record_property("statuses", dict(statuses))
    record_property("worst_turn_s", round(max(a.seconds for a in load.answers), 2))
