"""The dead-letter console: list, filters, pages, detail, replay and discard; viewers 403, charlie 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.integrations.models import (
    Connection,
    DeadLetter,
    DeadLetterKind,
    DeadLetterStatus,
    OutboxMessage,
    OutboxStatus,
    SyncRun,
)
from apps.integrations.views.deadletters import PAGE_SIZE
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified
from tests.fixtures.outbox import lead

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(f"integrations:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


def outbox_letter(tenant: Tenant, connection: Connection, n: int = 1) -> DeadLetter:
    with tenant_context(tenant):
        message = OutboxMessage.objects.create(
            connection=connection,
            stream="leads",
            external_id=f"hub-{n}",
            payload=lead(n),
            ordering_key=f"k{n}",
            sequence=1,
            status=OutboxStatus.DEAD,
            attempts=1,
            next_attempt_at=timezone.now(),
        )
        return DeadLetter.objects.create(
            kind=DeadLetterKind.OUTBOX,
            connection=connection,
            stream="leads",
            message=message,
            payload=lead(n),
            error="Salesforce 400: REQUIRED_FIELD_MISSING",
            errors=[
                {
                    "number": 1,
                    "started_at": "2026-01-01T00:00:00+00:00",
                    "finished_at": None,
                    "error": "Salesforce 400: REQUIRED_FIELD_MISSING",
                    "retry_after": None,
                }
            ],
            attempts=1,
        )


def sync_letter(tenant: Tenant, connection: Connection) -> DeadLetter:
    with tenant_context(tenant):
        run = SyncRun.objects.create(connection=connection, stream="contacts", trigger="schedule")
        return DeadLetter.objects.create(
            kind=DeadLetterKind.SYNC,
            connection=connection,
            stream="contacts",
            sync_run=run,
            payload={"stream": "contacts", "trigger": "schedule", "backfill": False},
            error="Retries exhausted after 11 attempts. Last error: Salesforce 503",
            attempts=11,
        )


def test_empty_state_and_link_from_the_connections_page(alice_client: Client, tenant_a: Tenant) -> None:
    page = alice_client.get(url("deadletter-list", tenant_a))
    assert page.status_code == 200
    assert "No dead letters" in page.content.decode()
    connections = alice_client.get(url("connection-list", tenant_a)).content.decode()
    assert url("deadletter-list", tenant_a) in connections


def test_list_filters_and_pages(alice_client: Client, tenant_a: Tenant, sf_conn: Connection) -> None:
    for n in range(PAGE_SIZE + 1):
        outbox_letter(tenant_a, sf_conn, n)
    sync = sync_letter(tenant_a, sf_conn)
    page = alice_client.get(url("deadletter-list", tenant_a)).content.decode()
    assert page.count('class="dead-letter"') == PAGE_SIZE
    assert "Page 1 of 2" in page
    only_sync = alice_client.get(url("deadletter-list", tenant_a), {"kind": "sync"}).content.decode()
    assert only_sync.count('class="dead-letter"') == 1
    assert url("deadletter-detail", tenant_a, pk=sync.pk) in only_sync
    by_connection = alice_client.get(
        url("deadletter-list", tenant_a), {"connection": str(sf_conn.pk), "status": "open"}
    )
    assert "Page 1 of 2" in by_connection.content.decode()
    today = timezone.now().date()
    none = alice_client.get(
        url("deadletter-list", tenant_a), {"status": "replayed", "created_from": str(today)}
    )
    assert "No dead letters match these filters" in none.content.decode()
    later = alice_client.get(url("deadletter-list", tenant_a), {"created_from": "2999-01-01"})
    assert 'class="dead-letter"' not in later.content.decode()
    bad = alice_client.get(url("deadletter-list", tenant_a), {"kind": "nonsense"})
    assert bad.status_code == 400


def test_detail_replay_and_discard(
    alice_client: Client, alice: Any, tenant_a: Tenant, sf_conn: Connection
) -> None:
    letter = outbox_letter(tenant_a, sf_conn)
    sync = sync_letter(tenant_a, sf_conn)
    detail = alice_client.get(url("deadletter-detail", tenant_a, pk=letter.pk)).content.decode()
    assert "REQUIRED_FIELD_MISSING" in detail and "hub-1" in detail and 'class="attempt"' in detail
    assert url("deadletter-replay", tenant_a, pk=letter.pk) in detail
    response = alice_client.post(url("deadletter-replay", tenant_a, pk=letter.pk))
    assert response.status_code == 302
    response = alice_client.post(url("deadletter-discard", tenant_a, pk=sync.pk), CONFIRMED)
    assert response.status_code == 302
    again = alice_client.post(url("deadletter-discard", tenant_a, pk=letter.pk), CONFIRMED, follow=True)
    assert "already resolved" in again.content.decode()
    assert alice_client.get(url("deadletter-replay", tenant_a, pk=letter.pk)).status_code == 405
    with tenant_context(tenant_a):
        statuses = dict(DeadLetter.objects.values_list("pk", "status"))
        message = OutboxMessage.objects.get(dead_letter=letter)
        events = list(AuditEvent.objects.filter(action__startswith="deadletter.").order_by("seq"))
    assert statuses == {letter.pk: DeadLetterStatus.REPLAYED, sync.pk: DeadLetterStatus.DISCARDED}
    assert message.status == OutboxStatus.PENDING
    assert [(e.action, e.actor_id) for e in events] == [
        ("deadletter.replayed", alice.pk),
        ("deadletter.discarded", alice.pk),
    ]


def test_viewer_gets_403_and_charlie_404(
    client: Client, bob: Any, charlie: Any, tenant_a: Tenant, sf_conn: Connection
) -> None:
    letter = outbox_letter(tenant_a, sf_conn)
    pages = [
        ("get", url("deadletter-list", tenant_a)),
        ("get", url("deadletter-detail", tenant_a, pk=letter.pk)),
        ("post", url("deadletter-replay", tenant_a, pk=letter.pk)),
        ("post", url("deadletter-discard", tenant_a, pk=letter.pk)),
    ]
    login_verified(client, bob)
    for method, path in pages:
        assert getattr(client, method)(path).status_code == 403, path
    assert (
        url("deadletter-list", tenant_a) not in client.get(url("connection-list", tenant_a)).content.decode()
    )
    login_verified(client, charlie)
    for method, path in pages:
        assert getattr(client, method)(path).status_code == 404, path
    with tenant_context(tenant_a):
        assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.OPEN


def test_another_tenants_letter_is_404(
    alice_client: Client, tenant_a: Tenant, tenant_b: Tenant, sf_conn: Connection
) -> None:
    letter = outbox_letter(tenant_a, sf_conn)
    assert alice_client.get(url("deadletter-detail", tenant_a, pk=letter.pk + 1000)).status_code == 404
    assert alice_client.get(url("deadletter-detail", tenant_b, pk=letter.pk)).status_code == 404
