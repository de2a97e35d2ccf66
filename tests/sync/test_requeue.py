"""Lost sync messages are published again; a duplicate message of a run is a no-op; tasks have deadlines."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from apps.core.context import tenant_context
from apps.integrations.models import RunStatus, SyncAttempt, SyncRun
from apps.integrations.services import sync
from apps.integrations.services.sync import sync_request, sync_requeue_stale
from apps.integrations.tasks import outbox_relay_task, sync_stream_task
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.integrations import sf_connection
from tests.fixtures.processes import ROOT
from tests.fixtures.simulators import SMALL
from tests.sync.helpers import runs, task_kwargs

CONTACTS = SMALL["contacts"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(sync_stream_task, "apply_async", lambda kwargs: sent.append(kwargs))
    return sent


def _later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


def test_a_run_that_never_started_is_published_again_once_per_interval(
    tenant_a: Tenant, sf: SalesforceSimulator, published: list[dict[str, Any]]
) -> None:
    connection = sf_connection(tenant_a, sf)
    with tenant_context(tenant_a):
        sync_request(
            connection=connection, stream="contacts", trigger="webhook"
        )  # on_commit never fires here
    (run,) = runs(tenant_a)
    assert sync_requeue_stale() == 0  # young: its message may be on its way
    later = _later(settings.HUB_SYNC_REQUEUE_SECONDS + 1)
    assert sync_requeue_stale(now=later) == 1
    assert published == [task_kwargs(tenant_a, connection, trigger="webhook", backfill=False, run_id=run.pk)]
    assert sync_requeue_stale(now=later) == 0  # a second sweep (or a second beat) in the same interval
    assert sync_requeue_stale(now=_later(2 * settings.HUB_SYNC_REQUEUE_SECONDS + 2)) == 1


def test_a_retry_waiting_within_its_delay_is_left_alone(
    tenant_a: Tenant, sf: SalesforceSimulator, published: list[dict[str, Any]]
) -> None:
    connection = sf_connection(tenant_a, sf)
    with tenant_context(tenant_a):
        sync_request(connection=connection, stream="contacts", trigger="manual")
        (run,) = SyncRun.objects.all()
        SyncAttempt.objects.create(run=run, number=1, started_at=timezone.now(), finished_at=timezone.now())
    assert sync_requeue_stale(now=_later(settings.HUB_SYNC_REQUEUE_SECONDS + 1)) == 0
    overdue = settings.HUB_SYNC_REQUEUE_SECONDS + settings.HUB_SYNC_RETRY_MAX_SECONDS + 1
    assert sync_requeue_stale(now=_later(overdue)) == 1  # its retry message was lost
    assert [kwargs["run_id"] for kwargs in published] == [run.pk]


def test_started_or_ended_runs_are_never_published_again(
    tenant_a: Tenant, sf: SalesforceSimulator, published: list[dict[str, Any]]
) -> None:
    connection = sf_connection(tenant_a, sf)
    with tenant_context(tenant_a):
        for status in (RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED):
            SyncRun.objects.create(connection=connection, stream="contacts", trigger="manual", status=status)
    assert sync_requeue_stale(now=_later(10 * 86_400)) == 0
    assert published == []


def test_a_second_message_of_a_run_is_a_no_op(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    """The sweep may publish a run whose first message was only late: whichever comes second does nothing."""
    connection = sf_connection(tenant_a, sf)
    with tenant_context(tenant_a):
        run = SyncRun.objects.create(connection=connection, stream="contacts", trigger="manual")
    kwargs = task_kwargs(tenant_a, connection, run_id=run.pk)
    alias = tenant_a.home_region.db_alias
    key = sync.lock_key(tenant_id=tenant_a.id, connection_id=connection.pk, stream="contacts")
    # While another worker runs this very run (holds the stream's lock, its attempt unfinished) ...
    with tenant_context(tenant_a):
        SyncAttempt.objects.create(run=run, number=1, started_at=timezone.now())
        SyncRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    other = connections.create_connection(alias)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        assert sync_stream_task.apply(kwargs=kwargs).get() == RunStatus.RUNNING  # ... left alone, not skipped
    finally:
        other.close()
    with tenant_context(tenant_a):
        SyncAttempt.objects.filter(run=run).update(finished_at=timezone.now())
        SyncRun.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED)
    assert sync_stream_task.apply(kwargs=kwargs).get() == RunStatus.SUCCEEDED
    # ... and after it ended, a late duplicate changes nothing.
    assert sync_stream_task.apply(kwargs=kwargs).get() == RunStatus.SUCCEEDED
    (only,) = runs(tenant_a)
    assert only.created == CONTACTS


# --- task deadlines ---------------------------------------------------------------------------------------
def test_tasks_have_time_limits_per_kind() -> None:
    assert sync_stream_task.soft_time_limit == settings.HUB_SYNC_TASK_TIME_LIMIT_SECONDS
    assert sync_stream_task.time_limit == settings.HUB_SYNC_TASK_TIME_LIMIT_SECONDS + 30
    assert outbox_relay_task.soft_time_limit == settings.HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT == settings.HUB_TASK_TIME_LIMIT_SECONDS
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for soft in (
        settings.HUB_TASK_TIME_LIMIT_SECONDS,
        settings.HUB_SYNC_TASK_TIME_LIMIT_SECONDS,
        settings.HUB_OUTBOX_TASK_TIME_LIMIT_SECONDS,
    ):
        assert soft + 30 < visibility  # a running task is never handed to a second worker
        assert soft > 5 + 30  # longer than one vendor call (connect + read timeouts, connectors/http.py)


def test_a_time_limit_longer_than_the_visibility_timeout_is_refused() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hub.settings.test",
        "CELERY_VISIBILITY_TIMEOUT": "600",
        "HUB_TASK_TIME_LIMIT_SECONDS": "60",
        "HUB_SYNC_TASK_TIME_LIMIT_SECONDS": "600",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "HUB_SYNC_TASK_TIME_LIMIT_SECONDS" in result.stderr


def test_a_sync_that_uses_up_its_time_limit_fails_cleanly(
    tenant_a: Tenant, sf: SalesforceSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soft limit raises inside the task: the run and its attempt end, the stream lock is released."""
    from celery.exceptions import SoftTimeLimitExceeded

    connection = sf_connection(tenant_a, sf)

    def too_slow(*args: Any, **kwargs: Any) -> Any:
        raise SoftTimeLimitExceeded()
        yield  # a generator, like the real one

    monkeypatch.setattr(sync, "prepared_batches", too_slow)
    assert sync_stream_task.apply(kwargs=task_kwargs(tenant_a, connection)).get() == RunStatus.FAILED
    (run,) = runs(tenant_a)
    assert run.error == sync.TIME_LIMIT_EXCEEDED
    with tenant_context(tenant_a):
        assert not SyncAttempt.objects.filter(run=run, finished_at=None).exists()
    monkeypatch.undo()
    assert sync_stream_task.apply(kwargs=task_kwargs(tenant_a, connection)).get() == RunStatus.SUCCEEDED
