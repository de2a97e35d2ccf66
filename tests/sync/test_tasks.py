"""Celery wiring of the sync: retries with backoff, exhaustion, quiet returns, scheduling, routing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.core.context import tenant_context
from apps.integrations.models import RunStatus, StreamState, SyncAttempt
from apps.integrations.retry import sync_retry_delay as retry_delay
from apps.integrations.services import sync
from apps.integrations.services.connections import connection_delete, connection_set_enabled
from apps.integrations.services.sync import (
    stream_pause,
    stream_resume,
    stream_schedule_set,
    streams_claim_due,
    sync_request,
)
from apps.integrations.tasks import sync_due, sync_stream_task
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.integrations import sf_connection
from tests.fixtures.simulators import SMALL
from tests.sync.helpers import runs, task_kwargs

CONTACTS = SMALL["contacts"]

pytestmark = pytest.mark.django_db


def test_visibility_timeout_outlasts_the_longest_retry_delay() -> None:
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > settings.HUB_SYNC_RETRY_MAX_SECONDS
    assert retry_delay(retries=60, retry_after=10 * visibility) <= settings.HUB_SYNC_RETRY_MAX_SECONDS


def test_retry_delay_is_jittered_exponential_and_honours_retry_after(settings: Any) -> None:
    settings.HUB_SYNC_RETRY_BASE_MS = 1000
    settings.HUB_SYNC_RETRY_MAX_SECONDS = 60
    delays = [retry_delay(retries=3) for _ in range(200)]
    assert all(0 <= d <= 8 for d in delays) and len(set(delays)) > 100
    assert all(retry_delay(retries=0, retry_after=30) >= 30 for _ in range(20))
    assert retry_delay(retries=0, retry_after=3600) == 60


def test_routes_send_syncs_to_the_sync_queue() -> None:
    from hub.celery import app

    route = app.amqp.router.route({}, "apps.integrations.tasks.sync_stream_task", (), {}, None)
    assert route["queue"].name == "sync"
    assert (
        app.amqp.router.route({}, "apps.integrations.tasks.sync_due", (), {}, None)["queue"].name == "default"
    )
    assert sync_stream_task.acks_late and sync_stream_task.reject_on_worker_lost


def test_transient_errors_are_retried_until_the_run_succeeds(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    # Each failing GET is tried three times by the session (two safe retries): 6 errors = 2 failed attempts.
    sf.inject(errors=[{"status": 503, "rate": 1.0, "count": 6}])
    sync_stream_task.apply(kwargs=task_kwargs(tenant_a, connection))  # eager: retries run inline
    (run,) = runs(tenant_a)
    assert run.status == RunStatus.SUCCEEDED and run.created == CONTACTS
    with tenant_context(tenant_a):
        errors = list(SyncAttempt.objects.filter(run=run).order_by("number").values_list("error", flat=True))
    assert len(errors) == 3 and errors[0] and errors[1] and not errors[2]


def test_exhausted_retries_fail_the_run(tenant_a: Tenant, sf: SalesforceSimulator, settings: Any) -> None:
    settings.HUB_SYNC_MAX_RETRIES = 2
    connection = sf_connection(tenant_a, sf)
    sf.inject(outage="503")
    sync_stream_task.apply(kwargs=task_kwargs(tenant_a, connection))
    (run,) = runs(tenant_a)
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("Retries exhausted after 3 attempts")
    with tenant_context(tenant_a):
        assert SyncAttempt.objects.filter(run=run).count() == 3


def test_permanent_errors_are_not_retried(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    connection = sf_connection(tenant_a, sf, client_secret="wrong-secret-Zq9x")
    result = sync_stream_task.apply(kwargs=task_kwargs(tenant_a, connection))
    assert result.get() == RunStatus.FAILED
    (run,) = runs(tenant_a)
    with tenant_context(tenant_a):
        assert SyncAttempt.objects.filter(run=run).count() == 1


def test_tasks_return_quietly_when_tenant_or_connection_is_gone(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    assert sync_stream_task.apply(kwargs=task_kwargs(tenant_a, connection, tenant_id=987654)).get() is None
    kwargs = task_kwargs(tenant_a, connection)
    connection_delete(connection=connection, tenant=tenant_a)
    assert sync_stream_task.apply(kwargs=kwargs).get() is None
    assert runs(tenant_a) == []


def test_disabled_connection_is_skipped(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    connection = sf_connection(tenant_a, sf)
    connection_set_enabled(connection=connection, tenant=tenant_a, enabled=False)
    assert sync_stream_task.apply(kwargs=task_kwargs(tenant_a, connection)).get() == RunStatus.SKIPPED


def test_sync_request_records_a_queued_run_and_enqueues_on_commit(
    tenant_a: Tenant,
    sf: SalesforceSimulator,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    connection = sf_connection(tenant_a, sf)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(sync_stream_task, "apply_async", lambda kwargs: sent.append(kwargs))
    with (
        tenant_context(tenant_a),
        django_capture_on_commit_callbacks(using=tenant_a.home_region.db_alias, execute=True),
    ):
        sync_request(connection=connection, stream="contacts", trigger="manual", backfill=True)
        assert sent == []
    (run,) = runs(tenant_a)
    assert run.status == RunStatus.QUEUED and run.backfill
    assert sent == [task_kwargs(tenant_a, connection, backfill=True, run_id=run.pk)]
    sync_stream_task.apply(kwargs=sent[0])
    (run,) = runs(tenant_a)
    assert run.status == RunStatus.SUCCEEDED and run.created == CONTACTS


def test_sync_due_queues_due_streams_once_and_respects_pause(
    tenant_a: Tenant, tenant_b: Tenant, sf: SalesforceSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_a = sf_connection(tenant_a, sf)
    connection_b = sf_connection(tenant_b, sf)
    with tenant_context(tenant_a):
        stream_schedule_set(connection=connection_a, stream="contacts", interval_seconds=600)
        stream_schedule_set(connection=connection_a, stream="orders", interval_seconds=600)
        stream_pause(connection=connection_a, stream="orders")
    with tenant_context(tenant_b):
        stream_schedule_set(connection=connection_b, stream="contacts", interval_seconds=600)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(sync_stream_task, "delay", lambda **kwargs: sent.append(kwargs))
    assert sync_due() == 2
    assert sorted((k["tenant_id"], k["stream"]) for k in sent) == sorted(
        [(tenant_a.id, "contacts"), (tenant_b.id, "contacts")]
    )
    assert sync_due() == 0  # claimed: not due again before the interval passes
    with tenant_context(tenant_a):
        stream_resume(connection=connection_a, stream="orders")
        state = StreamState.objects.get(connection=connection_a, stream="contacts")
    assert state.next_run_at is not None and state.next_run_at > timezone.now() + timedelta(seconds=500)
    assert [(t.id, items) for t, items in streams_claim_due()] == [
        (tenant_a.id, [(connection_a.pk, "orders")])
    ]
    connection_set_enabled(connection=connection_b, tenant=tenant_b, enabled=False)
    ((tenant, items),) = streams_claim_due(now=timezone.now() + timedelta(hours=1))
    assert tenant.id == tenant_a.id  # tenant B's connection is disabled
    assert sorted(items) == [(connection_a.pk, "contacts"), (connection_a.pk, "orders")]


def test_successful_run_schedules_the_next_one(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    connection = sf_connection(tenant_a, sf)
    with tenant_context(tenant_a):
        stream_schedule_set(connection=connection, stream="contacts", interval_seconds=120)
        sync.sync_stream(connection_id=connection.pk, stream="contacts", trigger="schedule")
        state = StreamState.objects.get(connection=connection, stream="contacts")
    assert state.last_success_at is not None and state.next_run_at is not None
    assert state.next_run_at - state.last_success_at == timedelta(seconds=120)
