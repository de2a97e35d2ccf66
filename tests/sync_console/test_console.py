"""The sync console: overview values, run history and detail, audited actions, webhook setup, access."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.integrations.models import Connection, RunStatus, StreamState, SyncAttempt, SyncedRecord, SyncRun
from apps.integrations.resilience import breaker_for
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified
from tests.fixtures.integrations import offline_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def servicenow(tenant_a: Tenant) -> Connection:
    return offline_connection(tenant_a, "servicenow", name="ServiceNow")


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(f"integrations:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


def stream_url(name: str, tenant: Tenant, connection: Connection, stream: str = "tickets") -> str:
    return url(name, tenant, pk=connection.pk, stream=stream)


def text(response: Any) -> str:
    """The page's text with tags and runs of white space collapsed, for value assertions."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def audits(tenant: Tenant, action: str) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action=action))


def add_runs(tenant: Tenant, connection: Connection, stream: str, statuses: list[str]) -> list[SyncRun]:
    """Runs oldest first, one minute apart (the last in the list is the newest)."""
    now = timezone.now()
    made = []
    with tenant_context(tenant):
        for n, status in enumerate(statuses):
            run = SyncRun.objects.create(
                connection=connection, stream=stream, trigger="schedule", status=status, read=10 * n
            )
            SyncRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(minutes=len(statuses) - n))
            made.append(run)
    return made


def add_records(tenant: Tenant, connection: Connection, stream: str, count: int, *, deleted: int = 0) -> None:
    now = timezone.now()
    with tenant_context(tenant):
        for n in range(count + deleted):
            SyncedRecord.objects.create(
                tenant_id=tenant.id,
                connection=connection,
                stream=stream,
                external_id=f"{stream}-{n}",
                updated_at=now,
                deleted=n >= count,
                content_hash="0" * 64,
                synced_at=now,
            )


# --- overview ----------------------------------------------------------------------------------------------
def test_overview_shows_each_stream_with_its_numbers(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    add_runs(tenant_a, servicenow, "tickets", ["succeeded", "failed", "succeeded", "failed", "running"])
    add_records(tenant_a, servicenow, "tickets", 3, deleted=2)
    with tenant_context(tenant_a):
        StreamState.objects.create(
            connection=servicenow,
            stream="tickets",
            last_success_at=timezone.now() - timedelta(hours=2),
            next_run_at=timezone.now() + timedelta(minutes=5),
        )
        StreamState.objects.create(connection=servicenow, stream="contacts", paused=True)
    response = connor_client.get(url("sync-overview", tenant_a))
    assert response.status_code == 200
    html = response.content.decode()
    row = re.search(r'<tr data-stream="tickets">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(1)))
    assert "Running" in cells  # the newest run
    assert "50 % (2/4)" in cells.replace("&nbsp;", " ")  # running runs are not finished
    assert re.search(r"2 hours", cells)
    assert cells.strip().endswith("3"), "deleted records are not counted"
    contacts = re.search(r'<tr data-stream="contacts">(.*?)</tr>', html, re.S)
    assert contacts is not None and "Paused" in contacts.group(1)
    articles = re.search(r'<tr data-stream="articles">(.*?)</tr>', html, re.S)
    assert articles is not None and "Never" in articles.group(1) and "Not scheduled yet" in articles.group(1)
    assert "Closed (calls flow)" in text(response)
    assert "0 rejected deliveries in the last 7 days" in text(response)


def test_overview_shows_an_open_breaker_with_its_probe_time(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    breaker = breaker_for(servicenow, failure_threshold=2, cooldown=120)
    breaker.record_failure()
    breaker.record_failure()
    state = breaker.state()
    assert state.state == "open" and state.retry_at is not None
    page = text(connor_client.get(url("sync-overview", tenant_a)))
    local = timezone.localtime(state.retry_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f"Open after 2 failures — will probe at {local}" in page


@contextmanager
def count_queries() -> Iterator[list[CaptureQueriesContext]]:
    with ExitStack() as stack:
        yield [stack.enter_context(CaptureQueriesContext(connections[a])) for a in ("default", "region_eu")]


def overview_queries(client: Client, tenant: Tenant) -> int:
    with count_queries() as contexts:
        assert client.get(url("sync-overview", tenant)).status_code == 200
    return sum(len(c.captured_queries) for c in contexts)


def test_overview_query_count_does_not_grow(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    add_runs(tenant_a, servicenow, "tickets", ["succeeded", "failed"])
    few = overview_queries(connor_client, tenant_a)
    for n in range(4):
        other = offline_connection(tenant_a, "servicenow", name=f"SN {n}")
        add_runs(tenant_a, other, "tickets", ["succeeded"] * 3)
        add_runs(tenant_a, other, "contacts", ["failed"] * 2)
        add_records(tenant_a, other, "tickets", 2)
        with tenant_context(tenant_a):
            StreamState.objects.create(connection=other, stream="tickets", last_success_at=timezone.now())
    assert overview_queries(connor_client, tenant_a) == few


# --- history and detail ------------------------------------------------------------------------------------
def test_run_history_is_paginated_newest_first(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    runs = add_runs(tenant_a, servicenow, "tickets", ["succeeded"] * 29 + ["failed"])
    first = connor_client.get(stream_url("sync-stream", tenant_a, servicenow))
    assert first.status_code == 200
    html = first.content.decode()
    assert html.count('href="/t/tenant-a/sync/runs/') == 25
    assert html.index(f"/sync/runs/{runs[-1].pk}/") < html.index(f"/sync/runs/{runs[-2].pk}/")
    second = connor_client.get(stream_url("sync-stream", tenant_a, servicenow) + "?page=2")
    assert second.content.decode().count('href="/t/tenant-a/sync/runs/') == 5
    assert f"/sync/runs/{runs[0].pk}/" in second.content.decode()


def test_run_detail_shows_counts_and_attempt_errors(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    now = timezone.now()
    with tenant_context(tenant_a):
        run = SyncRun.objects.create(
            connection=servicenow,
            stream="tickets",
            trigger="webhook",
            status=RunStatus.SUCCEEDED,
            read=120,
            created=100,
            updated=15,
            unchanged=5,
            duration_ms=4321,
        )
        SyncAttempt.objects.create(
            run=run,
            number=1,
            started_at=now,
            finished_at=now,
            error="503 Service Unavailable",
            retry_after=2.5,
        )
        SyncAttempt.objects.create(run=run, number=2, started_at=now, finished_at=now)
    page = text(connor_client.get(url("sync-run", tenant_a, run_id=run.pk)))
    for expected in ("Succeeded", "Webhook", "Read 120", "Created 100", "Updated 15", "Unchanged 5", "4321"):
        assert expected in page
    assert "503 Service Unavailable 2.5" not in page  # column order: retry after, then error
    assert "2.5 503 Service Unavailable" in page


# --- actions -----------------------------------------------------------------------------------------------
def test_sync_now_and_backfill_queue_runs_and_audit(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    response = connor_client.post(stream_url("sync-now", tenant_a, servicenow))
    assert response.status_code == 302
    assert response["Location"] == stream_url("sync-stream", tenant_a, servicenow)
    connor_client.post(stream_url("sync-backfill", tenant_a, servicenow))
    with tenant_context(tenant_a):
        runs = list(
            SyncRun.objects.filter(connection=servicenow)
            .order_by("id")
            .values_list("stream", "trigger", "backfill", "status")
        )
    assert runs == [("tickets", "manual", False, "queued"), ("tickets", "backfill", True, "queued")]
    requested, backfill = audits(tenant_a, "sync.requested"), audits(tenant_a, "sync.backfill_requested")
    assert [(e.changes, e.actor_label, e.target_id) for e in requested] == [
        ({"stream": "tickets"}, "connor", str(servicenow.pk))
    ]
    assert len(backfill) == 1


def test_disabled_connection_is_not_synced(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    from apps.integrations.services.connections import connection_set_enabled

    connection_set_enabled(connection=servicenow, tenant=tenant_a, enabled=False)
    connor_client.post(stream_url("sync-now", tenant_a, servicenow))
    with tenant_context(tenant_a):
        assert not SyncRun.objects.exists()
    assert audits(tenant_a, "sync.requested") == []


def test_pause_and_resume(connor_client: Client, tenant_a: Tenant, servicenow: Connection) -> None:
    connor_client.post(stream_url("sync-pause", tenant_a, servicenow))
    with tenant_context(tenant_a):
        assert StreamState.objects.get(connection=servicenow, stream="tickets").paused is True
    page = text(connor_client.get(stream_url("sync-stream", tenant_a, servicenow)))
    assert "Resume" in page and "Paused" in page
    connor_client.post(stream_url("sync-resume", tenant_a, servicenow))
    with tenant_context(tenant_a):
        state = StreamState.objects.get(connection=servicenow, stream="tickets")
    assert state.paused is False and state.next_run_at is not None
    assert len(audits(tenant_a, "sync.paused")) == 1 and len(audits(tenant_a, "sync.resumed")) == 1


def test_schedule_change_and_field_errors(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    target = stream_url("sync-schedule", tenant_a, servicenow)
    for bad, message in (
        ("30", "greater than or equal to 60"),
        ("abc", "Enter a whole number"),
        ("", "This field is required"),
        ("604801", "less than or equal to 604800"),
    ):
        response = connor_client.post(target, {"interval_seconds": bad})
        assert response.status_code == 400
        assert message in text(response), bad
    assert audits(tenant_a, "sync.schedule_changed") == []
    assert connor_client.post(target, {"interval_seconds": "300"}).status_code == 302
    with tenant_context(tenant_a):
        assert StreamState.objects.get(connection=servicenow, stream="tickets").interval_seconds == 300
    assert [e.changes for e in audits(tenant_a, "sync.schedule_changed")] == [
        {"stream": "tickets", "interval_seconds": [900, 300]}  # 900: the default it had
    ]
    assert "Every 300 seconds" in text(connor_client.get(stream_url("sync-stream", tenant_a, servicenow)))


def test_unknown_stream_and_foreign_ids_are_404(
    connor_client: Client, tenant_a: Tenant, tenant_b: Tenant, servicenow: Connection
) -> None:
    assert connor_client.get(stream_url("sync-stream", tenant_a, servicenow, "leads")).status_code == 404
    assert connor_client.post(stream_url("sync-now", tenant_a, servicenow, "nope")).status_code == 404
    foreign = offline_connection(tenant_b, "servicenow")
    assert connor_client.get(stream_url("sync-stream", tenant_a, foreign)).status_code == 404
    assert connor_client.post(stream_url("sync-now", tenant_a, foreign)).status_code == 404
    foreign_run = add_runs(tenant_b, foreign, "tickets", ["succeeded"])[0]
    assert connor_client.get(url("sync-run", tenant_a, run_id=foreign_run.pk)).status_code == 404


# --- webhook setup -----------------------------------------------------------------------------------------
def test_webhook_page_rotates_and_shows_the_secret_once(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    page = connor_client.get(url("sync-webhooks", tenant_a, pk=servicenow.pk))
    assert f"http://testserver/hooks/servicenow/{servicenow.pk}/" in text(page)
    assert "Webhook secret: missing" in text(page)
    rotated = connor_client.post(url("sync-webhook-rotate", tenant_a, pk=servicenow.pk), CONFIRMED)
    assert rotated.status_code == 200 and rotated["Cache-Control"] == "no-store"
    with tenant_context(tenant_a):
        secret = Connection.objects.get(pk=servicenow.pk).secrets["webhook_secret"]
    assert secret in rotated.content.decode()
    again = connor_client.get(url("sync-webhooks", tenant_a, pk=servicenow.pk))
    assert secret not in again.content.decode() and "Webhook secret: set" in text(again)
    assert len(audits(tenant_a, "connection.webhook_secret_rotated")) == 1


def test_salesforce_webhook_page_hides_the_token_and_checks_the_org_id(
    connor_client: Client, tenant_a: Tenant
) -> None:
    connection = offline_connection(tenant_a, "salesforce", name="SF")
    page = text(connor_client.get(url("sync-webhooks", tenant_a, pk=connection.pk)))
    assert f"/hooks/salesforce/{connection.pk}/SECRET/" in page
    rotated = connor_client.post(url("sync-webhook-rotate", tenant_a, pk=connection.pk), CONFIRMED)
    with tenant_context(tenant_a):
        token = Connection.objects.get(pk=connection.pk).secrets["webhook_secret"]
    assert f"/hooks/salesforce/{connection.pk}/{token}/" in rotated.content.decode()
    bad = connor_client.post(url("sync-webhook-org", tenant_a, pk=connection.pk), {"org_id": "12345"})
    assert bad.status_code == 400 and "starting with 00D" in text(bad)
    good = connor_client.post(
        url("sync-webhook-org", tenant_a, pk=connection.pk), {"org_id": "00D5g000004XyZa"}
    )
    assert good.status_code == 302
    with tenant_context(tenant_a):
        assert Connection.objects.get(pk=connection.pk).settings["webhook_org_id"] == "00D5g000004XyZa"
    assert [e.changes for e in audits(tenant_a, "connection.webhook_org_changed")] == [
        {"webhook_org_id": ["", "00D5g000004XyZa"]}
    ]


def test_webhook_page_shows_rejection_counts(
    connor_client: Client, tenant_a: Tenant, servicenow: Connection
) -> None:
    from apps.integrations.services.webhooks import webhook_reject

    with tenant_context(tenant_a):
        for reason in ("signature", "signature", "stale"):
            webhook_reject(reason=reason, connection=servicenow)
    page = text(connor_client.get(url("sync-webhooks", tenant_a, pk=servicenow.pk)))
    assert "Bad or missing signature 2" in page and "Timestamp too old 1" in page
    assert "3 rejected deliveries in the last 7 days" in text(
        connor_client.get(url("sync-overview", tenant_a))
    )


# --- access ------------------------------------------------------------------------------------------------
def test_viewer_gets_403_and_changes_nothing(
    client: Client, tenant_a: Tenant, bob: Any, servicenow: Connection
) -> None:
    login_verified(client, bob)
    assert client.get(url("sync-overview", tenant_a)).status_code == 403
    assert client.get(stream_url("sync-stream", tenant_a, servicenow)).status_code == 403
    assert client.post(stream_url("sync-now", tenant_a, servicenow)).status_code == 403
    assert client.post(url("sync-webhook-rotate", tenant_a, pk=servicenow.pk)).status_code == 403
    with tenant_context(tenant_a):
        assert not SyncRun.objects.exists()
        assert "webhook_secret" not in Connection.objects.get(pk=servicenow.pk).secrets


def test_admin_sees_the_sync_area_in_the_navigation(client: Client, tenant_a: Tenant, alice: Any) -> None:
    login_verified(client, alice)
    home = client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
    assert url("sync-overview", tenant_a) in home.content.decode()
    assert client.get(url("sync-overview", tenant_a)).status_code == 200


def test_charlie_gets_404_everywhere(
    client: Client, tenant_a: Tenant, charlie: Any, servicenow: Connection
) -> None:
    run = add_runs(tenant_a, servicenow, "tickets", ["succeeded"])[0]
    login_verified(client, charlie)
    for target in (
        url("sync-overview", tenant_a),
        stream_url("sync-stream", tenant_a, servicenow),
        url("sync-run", tenant_a, run_id=run.pk),
        url("sync-webhooks", tenant_a, pk=servicenow.pk),
    ):
        assert client.get(target).status_code == 404, target
    for name in ("sync-now", "sync-backfill", "sync-pause", "sync-resume", "sync-schedule"):
        assert client.post(stream_url(name, tenant_a, servicenow)).status_code == 404, name
    assert client.post(url("sync-webhook-rotate", tenant_a, pk=servicenow.pk)).status_code == 404
