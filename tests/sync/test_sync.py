"""The sync service against the in-process Salesforce simulator: exactness, idempotence, errors, tenants."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connections

from apps.core.context import as_ref, tenant_context
from apps.integrations.models import RunStatus, StreamState, SyncAttempt, SyncedRecord, SyncRun
from apps.integrations.services import sync
from apps.integrations.services.sync import lock_key, sync_stream
from apps.tenants.models import Tenant
from connectors.base import Cursor
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.integrations import sf_connection
from tests.fixtures.simulators import SMALL
from tests.fixtures.stores import content_digest, sim_rows, store_rows

CONTACTS = SMALL["contacts"]

pytestmark = pytest.mark.django_db


def run_sync(tenant: Tenant, connection: Any, **kwargs: Any) -> SyncRun:
    kwargs.setdefault("trigger", "manual")
    with tenant_context(tenant):
        run = sync_stream(connection_id=connection.pk, stream=kwargs.pop("stream", "contacts"), **kwargs)
    assert run is not None
    return run


def stored_cursor(tenant: Tenant, connection: Any) -> Cursor:
    with tenant_context(tenant):
        return Cursor.from_json(StreamState.objects.get(connection=connection, stream="contacts").cursor)


def test_incremental_sync_stores_exactly_the_vendor_records(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf, page_size=200)
    run = run_sync(tenant_a, connection, batch_size=250)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.read, run.created, run.updated, run.unchanged) == (CONTACTS, CONTACTS, 0, 0)
    assert store_rows(tenant_a, connection) == sim_rows(sf)
    with tenant_context(tenant_a):
        record = SyncedRecord.objects.get(external_id="003Hb0000000001AAA")
        assert record.email == "contact1@example-de.test"
        assert record.display_name and record.fields["email"] == record.email
        assert len(record.content_hash) == 64
        assert SyncAttempt.objects.filter(run=run).count() == 1
    assert stored_cursor(tenant_a, connection).value is not None


def test_second_run_with_nothing_changed_reads_nothing_quickly(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    run_sync(tenant_a, connection)
    started = time.monotonic()
    again = run_sync(tenant_a, connection, trigger="schedule")
    assert time.monotonic() - started < 1.0
    assert again.status == RunStatus.SUCCEEDED
    assert (again.read, again.created, again.updated) == (0, 0, 0)


def test_touched_records_are_updated_exactly_once_across_tied_page_boundaries(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    # Pages of 200 and batches of 4 split groups of records sharing one second (the seed makes triples,
    # touch gives all ten the same second), so the cursor's tie-breaker ids are what prevents loss/repeats.
    connection = sf_connection(tenant_a, sf, page_size=200)
    run_sync(tenant_a, connection, batch_size=200)
    touched = sf.touch("contacts", count=10)
    run = run_sync(tenant_a, connection, batch_size=4)
    assert (run.read, run.created, run.updated, run.unchanged) == (10, 0, 10, 0)
    assert set(stored_cursor(tenant_a, connection).seen_ids) == set(touched)
    assert store_rows(tenant_a, connection) == sim_rows(sf)
    again = run_sync(tenant_a, connection, batch_size=4)
    assert (again.read, again.updated) == (0, 0)


def test_a_crash_mid_sync_resumes_without_loss_or_duplicates(
    tenant_a: Tenant, sf: SalesforceSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = sf_connection(tenant_a, sf, page_size=200)
    real = sync.upsert_records
    calls = {"n": 0}

    def crash_on_third(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return real(**kwargs)

    monkeypatch.setattr(sync, "upsert_records", crash_on_third)
    with pytest.raises(RuntimeError):
        run_sync(tenant_a, connection, batch_size=150)
    monkeypatch.setattr(sync, "upsert_records", real)
    assert len(store_rows(tenant_a, connection)) == 300  # two committed batches, cursor with them
    resumed = run_sync(tenant_a, connection, batch_size=150)
    assert resumed.status == RunStatus.SUCCEEDED
    assert (resumed.read, resumed.created) == (CONTACTS - 300, CONTACTS - 300)
    assert store_rows(tenant_a, connection) == sim_rows(sf)
    with tenant_context(tenant_a):
        crashed = SyncRun.objects.exclude(pk=resumed.pk).get()
    assert crashed.status == RunStatus.FAILED


def test_backfill_with_nothing_changed_writes_nothing_and_keeps_the_cursor(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    run_sync(tenant_a, connection)
    before = stored_cursor(tenant_a, connection)
    with tenant_context(tenant_a):
        synced_at = dict(SyncedRecord.objects.values_list("external_id", "synced_at"))
    backfill = run_sync(tenant_a, connection, trigger="backfill", backfill=True)
    assert backfill.status == RunStatus.SUCCEEDED
    assert (backfill.read, backfill.created, backfill.updated, backfill.unchanged) == (
        CONTACTS,
        0,
        0,
        CONTACTS,
    )
    assert stored_cursor(tenant_a, connection) == before
    with tenant_context(tenant_a):
        assert dict(SyncedRecord.objects.values_list("external_id", "synced_at")) == synced_at


def test_deleted_records_are_flagged(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    connection = sf_connection(tenant_a, sf)
    run_sync(tenant_a, connection)
    sf.delete("contacts", "003Hb0000000007AAA")
    run = run_sync(tenant_a, connection)
    assert (run.read, run.updated) == (1, 1)
    with tenant_context(tenant_a):
        assert SyncedRecord.objects.get(external_id="003Hb0000000007AAA").deleted is True
        assert SyncedRecord.objects.filter(deleted=False).count() == CONTACTS - 1


def test_bad_credentials_fail_the_run_at_once_with_the_vendors_reason(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf, client_secret="wrong-secret-Zq9x")
    run = run_sync(tenant_a, connection)
    assert run.status == RunStatus.FAILED
    assert "invalid client credentials" in run.error
    assert "wrong-secret-Zq9x" not in run.error
    with tenant_context(tenant_a):
        assert SyncAttempt.objects.filter(run=run).count() == 1


def test_transient_error_is_raised_for_retry_and_keeps_the_run_open(
    tenant_a: Tenant, sf: SalesforceSimulator
) -> None:
    connection = sf_connection(tenant_a, sf)
    sf.inject(errors=[{"status": 429, "rate": 1.0, "count": 1}])
    with tenant_context(tenant_a), pytest.raises(sync.SyncFailed) as failed:
        sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual")
    with tenant_context(tenant_a):
        run = SyncRun.objects.get(pk=failed.value.run_id)
        assert run.status == RunStatus.QUEUED
    retried = run_sync(tenant_a, connection, run_id=run.pk)
    assert retried.pk == run.pk and retried.status == RunStatus.SUCCEEDED
    assert retried.created == CONTACTS
    with tenant_context(tenant_a):
        assert list(SyncAttempt.objects.filter(run=run).values_list("number", flat=True)) == [1, 2]


def test_a_second_sync_of_the_same_stream_is_skipped(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    connection = sf_connection(tenant_a, sf)
    db = django_settings.DATABASES[tenant_a.home_region.db_alias]
    params = connections[tenant_a.home_region.db_alias].get_connection_params()
    dsn = {k: params[k] for k in ("dbname", "user", "password", "host", "port") if k in params}
    assert dsn["dbname"] == db["NAME"]
    with psycopg.connect(**dsn, autocommit=True) as other:
        key = lock_key(tenant_id=tenant_a.id, connection_id=connection.pk, stream="contacts")
        assert other.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone() == (True,)
        run = run_sync(tenant_a, connection)
    assert run.status == RunStatus.SKIPPED
    assert "running" in run.error
    assert run_sync(tenant_a, connection).status == RunStatus.SUCCEEDED  # lock gone with the session


def test_tenant_b_never_sees_tenant_a_records(
    tenant_a: Tenant, tenant_b: Tenant, sf: SalesforceSimulator
) -> None:
    connection_a = sf_connection(tenant_a, sf)
    run_sync(tenant_a, connection_a)
    with tenant_context(tenant_b):
        assert SyncedRecord.objects.count() == 0
        assert not SyncedRecord.objects.filter(email="contact1@example-de.test").exists()
        assert sync_stream(connection_id=connection_a.pk, stream="contacts", trigger="manual") is None
    connection_b = sf_connection(tenant_b, sf)
    run_b = run_sync(tenant_b, connection_b)
    assert run_b.created == CONTACTS
    with tenant_context(tenant_b):
        assert set(SyncedRecord.objects.values_list("connection_id", flat=True)) == {connection_b.pk}
    with tenant_context(tenant_a):
        assert set(SyncedRecord.objects.values_list("connection_id", flat=True)) == {connection_a.pk}
    assert content_digest(store_rows(tenant_a, connection_a)) == content_digest(
        store_rows(tenant_b, connection_b)
    )


def test_orders_are_found_by_number(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    connection = sf_connection(tenant_a, sf)
    run = run_sync(tenant_a, connection, stream="orders")
    assert run.created == 30
    with tenant_context(tenant_a):
        order = SyncedRecord.objects.get(stream="orders", number="00000007")
    assert order.status and order.fields["number"] == "00000007"


def test_retention_and_erasure_handlers(tenant_a: Tenant, sf: SalesforceSimulator) -> None:
    from datetime import UTC, datetime, timedelta

    from apps.policies.registry import Subject, erasers, purgers

    connection = sf_connection(tenant_a, sf)
    run_sync(tenant_a, connection)
    ref = as_ref(tenant_a)
    erased = erasers()["synced_records"](
        tenant=ref,
        subject=Subject.of(email=" Contact1@Example-DE.test", phone=None, external_id="003Hb0000000002AAA"),
    )
    assert erased == 2
    now = datetime.now(UTC)
    assert purgers()["sync_logs"](tenant=ref, cutoff=now - timedelta(days=1), batch_size=10) == 0
    assert purgers()["sync_logs"](tenant=ref, cutoff=now + timedelta(seconds=1), batch_size=10) == 1
    # Seeded contacts changed at the vendor in 2024: all older than a cutoff of today.
    purged = purgers()["synced_records"](tenant=ref, cutoff=now, batch_size=300)
    assert purged == CONTACTS - 2
    with tenant_context(tenant_a):
        assert not SyncedRecord.objects.exists()
