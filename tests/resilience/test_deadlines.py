"""Deadlines and what a dependency failure becomes (issue 15, apps/core/deadlines.py), in process.

The same behaviours under real stalls, against gunicorn, are in tests/chaos/test_stall_dependencies.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import OperationalError, connections, transaction
from django.test import Client
from kombu.exceptions import OperationalError as KombuOperationalError

from apps.chat.models import Message
from apps.chat.services.channels import channel_create
from apps.core import deadlines
from apps.observability import metrics
from apps.tenants.models import Tenant
from tests.chaos.faults import StallProxy
from tests.fixtures.cache import kill_redis
from tests.fixtures.chat import IssuedKey, issue_key

pytestmark = [pytest.mark.django_db(databases="__all__"), pytest.mark.usefixtures("redis_seen_up")]


def counter(family: Any, **labels: str) -> float:
    return float(family.labels(**labels)._value.get())


@pytest.fixture
def key_a(tenant_a: Tenant) -> IssuedKey:
    return issue_key(channel_create(tenant=tenant_a, name="Website", kind="web"))


def post_turn(client: Client, key: IssuedKey, conversation_id: str, idem: str) -> Any:
    return client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        {"text": "Hello!"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {key.plaintext}", "Idempotency-Key": idem},
    )


def start(client: Client, key: IssuedKey) -> str:
    response = client.post("/api/v1/conversations", {}, content_type="application/json", **key.headers)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


# --- errors map to 503 ---


def test_a_turn_that_cannot_be_stored_is_answered_503_not_as_if_stored(
    key_a: IssuedKey, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(raise_request_exception=False)
    conversation = start(client, key_a)
    before = counter(metrics.DEPENDENCY_ERRORS, dependency="postgres", kind="unavailable")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("apps.chat.services.conversations._write_turn", fail)
    response = post_turn(client, key_a, conversation, "t-1")
    assert response.status_code == 503
    assert response["Retry-After"] == str(django_settings.HUB_RETRY_AFTER_SECONDS)
    assert set(response.json()) == {"detail"}
    assert "unavailable" in response.json()["detail"]
    assert counter(metrics.DEPENDENCY_ERRORS, dependency="postgres", kind="unavailable") == before + 1
    assert not Message.all_tenants.using(tenant_a.home_region.db_alias).filter(idempotency_key="t-1").exists()
    monkeypatch.undo()
    retried = post_turn(client, key_a, conversation, "t-1")  # the documented retry with the same key
    assert retried.status_code == 200


def test_a_console_page_gets_a_friendly_503_page(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(alice)

    def fail(request: Any) -> Any:
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setattr("django.contrib.auth.middleware.get_user", fail)
    response = client.get("/")
    assert response.status_code == 503
    assert response["Retry-After"] == str(django_settings.HUB_RETRY_AFTER_SECONDS)
    body = response.content.decode()
    assert "Temporarily unavailable" in body and "Traceback" not in body and "OperationalError" not in body


def test_other_errors_stay_500_without_a_trace(key_a: IssuedKey, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(raise_request_exception=False)
    conversation = start(client, key_a)
    monkeypatch.setattr(
        "apps.chat.services.conversations._write_turn",
        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")),
    )
    response = post_turn(client, key_a, conversation, "t-2")
    assert response.status_code == 500
    assert response.json() == {"detail": "Server error."}


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OperationalError("x"), ("postgres", "unavailable")),
        (redis.TimeoutError("x"), ("redis", "timeout")),
        (redis.ConnectionError("x"), ("redis", "unavailable")),
        (deadlines.RedisSkipped("x"), ("redis", "unavailable")),
        (KombuOperationalError("x"), ("broker", "unavailable")),
        (deadlines.DependencyUnavailable("redis"), ("redis", "unavailable")),
        (redis.ResponseError("WRONGTYPE"), None),  # a bug, not an outage
        (ValueError("x"), None),
    ],
)
def test_which_errors_are_a_dependency_down(exc: Exception, expected: tuple[str, str] | None) -> None:
    assert deadlines.dependency_of(exc) == expected


# --- statement budgets ---


def _server_timeout(alias: str = "default") -> str:
    return str(connections[alias].connection.execute("SHOW statement_timeout").fetchone()[0])


def test_a_request_class_sets_its_budget_and_gives_the_connection_back(settings: Any) -> None:
    settings.HUB_DB_STATEMENT_TIMEOUT_CONSOLE_MS = 7000
    connections["default"].ensure_connection()
    default = _server_timeout()
    assert default == "0"  # this process (pytest) runs with the command budget: none
    with deadlines.statement_class("console"), connections["default"].cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "7s"
    assert _server_timeout() == default


def test_web_processes_get_the_chat_budget_from_the_connection_options() -> None:
    """Nothing to SET on a chat turn: a new connection of a web process starts with the chat budget."""
    seen: dict[str, str] = {}

    def probe() -> None:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SHOW statement_timeout")
                seen["chat"] = cursor.fetchone()[0]
                cursor.execute("SHOW idle_in_transaction_session_timeout")
                seen["idle"] = cursor.fetchone()[0]
        finally:
            connections.close_all()

    deadlines.process_class_set("chat")
    try:
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(30)
    finally:
        deadlines.process_class_set("command")
    assert seen == {"chat": "3s", "idle": "1min"}  # the defaults, HUB_DB_*_MS


def test_a_statement_over_budget_is_cancelled_and_named_a_postgres_timeout(settings: Any) -> None:
    settings.HUB_DB_STATEMENT_TIMEOUT_API_MS = 100
    with (
        deadlines.statement_class("api"),
        pytest.raises(OperationalError) as caught,
        transaction.atomic(),
        connections["default"].cursor() as cursor,
    ):
        cursor.execute("SELECT pg_sleep(2)")
    assert deadlines.dependency_of(caught.value) == ("postgres", "timeout")


def test_the_watchdog_severs_a_call_to_a_stalled_server() -> None:
    """A paused server enforces no statement_timeout; the client cuts the call at its own deadline."""
    proxy = StallProxy(int(django_settings.DATABASES["default"]["PORT"]))
    connection = connections.create_connection("default")
    connection.settings_dict = {**connection.settings_dict, "PORT": str(proxy.port)}
    try:
        connection.ensure_connection()
        proxy.stall()
        started = time.monotonic()
        with (
            pytest.raises(OperationalError) as caught,
            deadlines.db_call(connection, limit=0.5),
            connection.cursor() as cursor,
        ):
            cursor.execute("SELECT 1")
        assert time.monotonic() - started < 3
        assert deadlines.dependency_of(caught.value) == ("postgres", "timeout")
    finally:
        proxy.close()
        connection.close()


# --- what degrades without Redis ---


def test_without_redis_the_chat_answers_from_the_database_then_rate_limits_fail_closed(
    key_a: IssuedKey, tenant_a: Tenant, redis_down: None, settings: Any
) -> None:
    client = Client(raise_request_exception=False)
    lookups = counter(metrics.DEGRADED, dependency="redis", feature="api_key_lookup")
    limits = counter(metrics.DEGRADED, dependency="redis", feature="rate_limit")
    conversation = start(client, key_a)
    started = time.monotonic()
    reply = post_turn(client, key_a, conversation, "r-1")
    assert reply.status_code == 200, reply.content
    assert time.monotonic() - started < 2  # one short timeout at most, then Redis is skipped
    assert counter(metrics.DEGRADED, dependency="redis", feature="api_key_lookup") >= lookups + 2
    assert counter(metrics.DEGRADED, dependency="redis", feature="rate_limit") >= limits + 2

    settings.HUB_CHAT_RATE_FAIL_OPEN_SECONDS = 0  # the outage has outlasted the fail-open window
    refused = post_turn(client, key_a, conversation, "r-2")
    assert refused.status_code == 503
    assert refused["Retry-After"] == str(settings.HUB_RETRY_AFTER_SECONDS)
    stored = Message.all_tenants.using(tenant_a.home_region.db_alias).filter(role="user")
    assert sorted(stored.values_list("idempotency_key", flat=True)) == ["r-1"]


def test_a_revoked_key_is_refused_while_redis_is_down(key_a: IssuedKey, redis_down: None) -> None:
    from django.utils import timezone

    from apps.chat.models import ApiKey

    ApiKey.objects.filter(pk=key_a.key.pk).update(revoked_at=timezone.now())
    response = Client().post("/api/v1/conversations", {}, content_type="application/json", **key_a.headers)
    assert response.status_code == 401


def test_invalidations_still_fail_without_redis(redis_down: None) -> None:
    """A skipped read is harmless; a lost invalidation would serve stale data once Redis is back."""
    from django.core.cache import cache

    with deadlines.optional_cache("cache"):
        assert cache.get("anything", "miss") == "miss"
        cache.set("anything", 1)
        with pytest.raises(redis.ConnectionError):
            cache.delete("anything")


def test_console_pages_work_from_the_database_without_redis(alice: Any, settings: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    kill_redis(settings)  # the session row is in the database; its cached copy is unreachable
    response = client.get("/", follow=True)
    assert response.status_code == 200, response.content[:500]


def test_an_inbound_webhook_is_handled_without_redis(redis_down: None) -> None:
    """Webhook throttles and de-duplication live in Redis, but ServiceNow does not retry: without Redis the
    ingest goes on without it (an unsigned call to an unknown connection is refused as unauthenticated, as
    with Redis: 401, not a 503 or a 500). The signed path: tests/webhooks/test_broker_down.py."""
    response = Client(raise_request_exception=False).post(
        "/hooks/hubspot/6c1f0d1e-8b0e-4c59-9d55-4b8f6b7b1a11/", b"[]", content_type="application/json"
    )
    assert response.status_code == 401


def test_a_streamed_body_runs_with_its_request_budget(settings: Any) -> None:
    """An export streams after the view returned: its statements still get the request's budget."""
    from django.http import StreamingHttpResponse
    from django.test import RequestFactory

    from apps.core.middleware import DeadlineMiddleware

    settings.HUB_DB_STATEMENT_TIMEOUT_API_MS = 9000

    def rows() -> Iterator[bytes]:
        with connections["default"].cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            yield str(cursor.fetchone()[0]).encode()

    middleware = DeadlineMiddleware(lambda request: StreamingHttpResponse(rows()))
    response = middleware(RequestFactory().get("/api/v1/tenants/tenant-a/audit/export"))
    assert isinstance(response, StreamingHttpResponse)
    assert b"".join(response.streaming_content) == b"9s"  # type: ignore[arg-type]
    assert _server_timeout() == "0"  # and the connection got the process default back


def test_celery_worker_processes_run_with_the_task_budget() -> None:
    """worker_process_init / worker_init (apps/core/apps.py): a worker's connections get the task budget."""
    from apps.core.apps import _task_process

    seen: list[str] = []

    def probe() -> None:
        _task_process()
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SHOW statement_timeout")
                seen.append(cursor.fetchone()[0])
        finally:
            connections.close_all()

    try:
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(30)
    finally:
        deadlines.process_class_set("command")
    assert seen == ["5min"]  # HUB_DB_STATEMENT_TIMEOUT_TASK_MS, default 300000
