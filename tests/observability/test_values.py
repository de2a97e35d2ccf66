"""Metric values move when things happen, labels stay bounded, and no personal data gets in."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.context import tenant_context
from apps.integrations.models import DeadLetter, StreamState
from apps.integrations.services.outbox import outbox_enqueue
from apps.integrations.services.sync import SyncFailed, sync_stream
from apps.integrations.tasks import sync_due
from apps.observability import metrics
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.auth import login_verified
from tests.fixtures.integrations import sf_connection
from tests.fixtures.metrics import scrape, value

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_gauge_cache(settings: Any) -> None:
    settings.HUB_METRICS_CACHE_SECONDS = 0


def test_a_request_moves_its_route_histogram_labelled_by_route_name(alice: Any, tenant_a: Tenant) -> None:
    client = Client()
    login_verified(client, alice)
    before = scrape()
    pk = "7d8f7a2e-5a1b-4c3d-9e0f-123456789abc"
    assert client.get(f"/t/{tenant_a.slug}/connections/{pk}/").status_code == 404
    assert client.get(f"/t/{tenant_a.slug}/connections/").status_code == 200
    assert Client().get("/no/such/page/12345").status_code == 404
    after = scrape()
    count = "hub_http_request_duration_seconds_count"
    labels = {"method": "GET"}
    assert value(after, count, route="integrations:connection-edit", status="4xx", **labels) == (
        value(before, count, route="integrations:connection-edit", status="4xx", **labels) + 1
    )
    assert value(after, count, route="integrations:connection-list", status="2xx", **labels) == (
        value(before, count, route="integrations:connection-list", status="2xx", **labels) + 1
    )
    assert value(after, count, route="unmatched", status="4xx", **labels) == (
        value(before, count, route="unmatched", status="4xx", **labels) + 1
    )
    routes = {s.labels["route"] for s in after["hub_http_request_duration_seconds"]}
    assert routes, "no route was observed"
    for route in routes:  # route names, never paths with ids or slugs
        assert "/" not in route and pk not in route and tenant_a.slug not in route
        assert re.fullmatch(r"[\w.:-]+", route)
    statuses = {s.labels["status"] for s in after["hub_http_request_duration_seconds"]}
    assert statuses <= {"2xx", "3xx", "4xx", "5xx"}


def test_a_sync_against_the_simulator_moves_sync_records_and_vendor_latency(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    before = scrape()
    with tenant_context(tenant_a):
        run = sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual")
        assert run is not None and run.status == "succeeded"
        sf.touch("contacts", count=3)
        sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual")
    after = scrape()
    labels = {"tenant": "tenant-a", "connector": "salesforce", "stream": "contacts"}
    delta = {
        result: value(after, "hub_sync_records_total", result=result, **labels)
        - value(before, "hub_sync_records_total", result=result, **labels)
        for result in ("created", "updated", "unchanged")
    }
    assert delta["created"] == sf.counts["contacts"]
    assert delta["updated"] == 3
    count = "hub_vendor_request_duration_seconds_count"
    assert value(after, count, connector="salesforce", status="2xx") > value(
        before, count, connector="salesforce", status="2xx"
    )
    lag = value(after, "hub_sync_lag_seconds", **labels)
    assert 0 <= lag < 120  # just synced
    body = Client().get("/metrics").content.decode()
    assert "@" not in body  # the contacts' e-mail addresses never reach a label


def test_a_failing_vendor_moves_vendor_errors_breaker_state_and_transitions(
    tenant_a: Tenant, sf: SalesforceSimulator, settings: Any
) -> None:
    settings.HUB_BREAKER_FAILURE_THRESHOLD = 1
    connection = sf_connection(tenant_a, sf)
    before = scrape()
    assert value(before, "hub_breaker_state", tenant="tenant-a", connector="salesforce") == 0
    sf.inject(outage="503")
    with tenant_context(tenant_a), pytest.raises(SyncFailed):
        sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual")
    after = scrape()
    errors = "hub_vendor_errors_total"
    assert value(after, errors, connector="salesforce", kind="unavailable") == (
        value(before, errors, connector="salesforce", kind="unavailable") + 1
    )
    count = "hub_vendor_request_duration_seconds_count"
    assert value(after, count, connector="salesforce", status="5xx") == (
        value(before, count, connector="salesforce", status="5xx") + 1
    )
    assert value(after, "hub_breaker_state", tenant="tenant-a", connector="salesforce") == 2
    transitions = "hub_breaker_transitions_total"
    assert value(after, transitions, connector="salesforce", state="open") == (
        value(before, transitions, connector="salesforce", state="open") + 1
    )


def test_an_unreachable_vendor_counts_as_an_error_without_status(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    sf.stop()  # nothing listens on the port any more
    before = scrape()
    with tenant_context(tenant_a), pytest.raises(SyncFailed):
        sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual")
    after = scrape()
    count = "hub_vendor_request_duration_seconds_count"
    assert value(after, count, connector="salesforce", status="error") == (
        value(before, count, connector="salesforce", status="error") + 1
    )
    assert value(after, "hub_vendor_errors_total", connector="salesforce", kind="unavailable") == (
        value(before, "hub_vendor_errors_total", connector="salesforce", kind="unavailable") + 1
    )
    sf.start()


def _enqueue(tenant: Tenant, connection: Any, n: int) -> None:
    with tenant_context(tenant), transaction.atomic(using=tenant.home_region.db_alias):
        for i in range(n):
            outbox_enqueue(
                connection=connection,
                stream="leads",
                payload={"email": f"p{i}@example.test"},
                ordering_key=f"k{i}",
            )


def test_outbox_depth_and_dead_letters_equal_the_database_per_tenant(
    tenant_a: Tenant, tenant_b: Tenant, sf: SalesforceSimulator
) -> None:
    conn_a, conn_b = sf_connection(tenant_a, sf), sf_connection(tenant_b, sf)
    _enqueue(tenant_a, conn_a, 4)
    _enqueue(tenant_b, conn_b, 1)
    with tenant_context(tenant_a):
        from apps.integrations.models import OutboxMessage

        first = OutboxMessage.objects.order_by("id").first()
        assert first is not None
        OutboxMessage.objects.filter(pk=first.pk).update(attempts=2)  # failed once, waiting for a retry
        DeadLetter.objects.create(kind="sync", connection=conn_a, stream="contacts", error="boom")
        DeadLetter.objects.create(kind="sync", connection=conn_a, stream="contacts", status="discarded")
        db_pending = OutboxMessage.objects.filter(status="pending", attempts=0).count()
    families = scrape()
    assert value(families, "hub_outbox_depth", tenant="tenant-a", state="pending") == db_pending == 3
    assert value(families, "hub_outbox_depth", tenant="tenant-a", state="failed") == 1
    assert value(families, "hub_outbox_depth", tenant="tenant-b", state="pending") == 1
    assert value(families, "hub_dead_letters", tenant="tenant-a") == 1
    assert value(families, "hub_dead_letters", tenant="tenant-b") == 0
    body = Client().get("/metrics").content.decode()
    assert "example.test" not in body


def test_scrape_time_gauges_cost_a_fixed_number_of_queries(
    tenant_a: Tenant, tenant_b: Tenant, sf: SalesforceSimulator, region_eu: Any
) -> None:
    from apps.observability.collectors import database_snapshot
    from tests.factories import TenantFactory

    def queries() -> int:
        contexts = {alias: CaptureQueriesContext(connections[alias]) for alias in settings.DATABASES}
        for ctx in contexts.values():
            ctx.__enter__()
        try:
            database_snapshot()
        finally:
            for ctx in contexts.values():
                ctx.__exit__(None, None, None)
        return sum(len(ctx) for ctx in contexts.values())

    _enqueue(tenant_a, sf_connection(tenant_a, sf), 2)
    baseline = queries()
    for n in range(3):
        extra = TenantFactory.create(slug=f"extra-{n}", home_region=region_eu)
        _enqueue(extra, sf_connection(extra, sf), 2)
    assert queries() == baseline  # no query per tenant


def test_database_gauges_are_cached_briefly(tenant_a: Tenant, sf: SalesforceSimulator, settings: Any) -> None:
    from django.core.cache import cache

    from apps.observability.collectors import _CACHE_KEY

    settings.HUB_METRICS_CACHE_SECONDS = 30
    connection = sf_connection(tenant_a, sf)
    _enqueue(tenant_a, connection, 1)
    assert value(scrape(), "hub_outbox_depth", tenant="tenant-a", state="pending") == 1
    _enqueue(tenant_a, connection, 1)
    assert value(scrape(), "hub_outbox_depth", tenant="tenant-a", state="pending") == 1  # cached
    cache.delete(_CACHE_KEY)
    assert value(scrape(), "hub_outbox_depth", tenant="tenant-a", state="pending") == 2


def test_sync_lag_counts_from_creation_until_the_first_success(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    with tenant_context(tenant_a):
        state = StreamState.objects.create(connection=connection, stream="accounts")
        StreamState.objects.filter(pk=state.pk).update(created_at=timezone.now() - timedelta(hours=2))
        paused = StreamState.objects.create(connection=connection, stream="tickets", paused=True)
        assert paused.pk
    families = scrape()
    lag = value(
        families, "hub_sync_lag_seconds", tenant="tenant-a", connector="salesforce", stream="accounts"
    )
    assert 7200 <= lag < 7400
    streams = {s.labels["stream"] for s in families["hub_sync_lag_seconds"]}
    assert "tickets" not in streams  # paused on purpose: no lag alert


def test_queue_depth_reflects_queued_tasks() -> None:
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        before = value(scrape(), "hub_celery_queue_depth", queue="default")
        for _ in range(3):
            sync_due.apply_async()  # routed to "default"; no worker consumes this run's queue here
        after = scrape()
        assert value(after, "hub_celery_queue_depth", queue="default") == before + 3
        assert {s.labels["queue"] for s in after["hub_celery_queue_depth"]} == set(metrics.QUEUES)
    finally:
        client.delete(f"{prefix}default")


def test_queue_depth_covers_every_queue_a_task_is_routed_to() -> None:
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert set(metrics.QUEUES) == routed | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert "siem" in metrics.QUEUES  # HubCeleryQueueBacklog and the siem worker's HPA read it


def test_helpers_refuse_unbounded_label_values() -> None:
    with pytest.raises(ValueError, match="outcome"):
        metrics.observe_chat_turn(
            tenant="t", region="eu", channel="web", outcome="whatever", seconds=0.1, locale="en",
            locales=["en"],
        )  # fmt: skip
    with pytest.raises(ValueError, match="scope"):
        metrics.record_rate_limit_hit("user-42")
    assert metrics.channel_label("Support Chat of Bob") == "custom"
    assert metrics.token("jane.doe@example.com was here") == "unknown"
    assert metrics.token("gpt-4o-mini") == "gpt-4o-mini"
    assert metrics.status_class(None) == "error" and metrics.status_class(503) == "5xx"


def test_chat_llm_retrieval_and_rate_limit_helpers_move_their_families() -> None:
    before = scrape()
    metrics.observe_chat_turn(
        tenant="tenant-a", region="eu", channel="whatsapp", outcome="fallback", seconds=0.4, locale="de-AT",
        locales=["en", "de"],
    )  # fmt: skip
    metrics.observe_retrieval(region="eu", seconds=0.02)
    metrics.record_llm_usage(
        tenant="tenant-a", region="eu", channel="whatsapp", model="extractive", prompt_tokens=120,
        completion_tokens=30, cost_usd=0.0015,
    )  # fmt: skip
    metrics.record_rate_limit_hit("api_key")
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"tenant": "tenant-a", "region": "eu", "channel": "whatsapp"}
    assert moved("hub_chat_turns_total", outcome="fallback", locale="de", **chat) == 1
    assert moved("hub_chat_turn_duration_seconds_count", region="eu", channel="whatsapp", locale="de") == 1
    assert moved("hub_retrieval_duration_seconds_count", region="eu") == 1
    assert moved("hub_llm_tokens_total", model="extractive", kind="prompt", **chat) == 120
    assert moved("hub_llm_tokens_total", model="extractive", kind="completion", **chat) == 30
    assert moved("hub_llm_cost_usd_total", model="extractive", **chat) == pytest.approx(0.0015)
    assert moved("hub_rate_limit_hits_total", scope="api_key") == 1
