"""The transactional outbox against the Salesforce simulator: enqueue, order, idempotency, dead letters."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from apps.audit.hooks import run_appended
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.integrations.models import (
    Connection,
    DeadLetter,
    DeadLetterKind,
    DeadLetterStatus,
    OutboxAttempt,
    OutboxMessage,
    OutboxStatus,
    RunStatus,
    SyncAttempt,
    SyncRun,
)
from apps.integrations.retry import outbox_retry_delay as backoff_delay
from apps.integrations.services import outbox
from apps.integrations.services.deadletters import deadletter_discard, deadletter_replay, deadletter_sync_run
from apps.integrations.services.outbox import outbox_deliver, outbox_due, outbox_enqueue, outbox_relay
from apps.policies.services import erase_subject
from apps.tenants.models import Tenant
from connectors.errors import ConnectorError
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.outbox import lead, make_due, vendor_rows

pytestmark = pytest.mark.django_db


def enqueue(connection: Connection, key: str, payload: dict[str, Any]) -> OutboxMessage:
    with transaction.atomic(using=connection._state.db):
        return outbox_enqueue(connection=connection, stream="leads", payload=payload, ordering_key=key)


def message(tenant: Tenant, pk: int) -> OutboxMessage:
    with tenant_context(tenant):
        return OutboxMessage.objects.get(pk=pk)


def test_enqueue_commits_with_the_business_change_or_not_at_all(
    tenant_a: Tenant, sf_conn: Connection
) -> None:
    with tenant_context(tenant_a):

        def capture_then_fail() -> None:
            with transaction.atomic(using=tenant_a.home_region.db_alias):
                outbox_enqueue(connection=sf_conn, stream="leads", payload=lead(1), ordering_key="conv-1")
                raise RuntimeError("boom")  # the business change fails: the intent must go with it

        with pytest.raises(RuntimeError, match="boom"):
            capture_then_fail()
        assert not OutboxMessage.objects.exists()
        kept = enqueue(sf_conn, "conv-1", lead(1))
        assert kept.status == OutboxStatus.PENDING and kept.external_id.startswith("hub-")
        assert (kept.sequence, kept.attempts) == (1, 0)


@pytest.mark.django_db(transaction=True)
def test_enqueue_refuses_autocommit(tenant_a: Tenant, sf_conn: Connection) -> None:
    with tenant_context(tenant_a), pytest.raises(RuntimeError, match="inside the transaction"):
        outbox_enqueue(connection=sf_conn, stream="leads", payload=lead(1), ordering_key="k")


def test_enqueue_refuses_read_only_streams(tenant_a: Tenant, sf_conn: Connection) -> None:
    with (
        tenant_context(tenant_a),
        pytest.raises(ConnectorError, match="read-only"),
        transaction.atomic(using=tenant_a.home_region.db_alias),
    ):
        outbox_enqueue(connection=sf_conn, stream="orders", payload={}, ordering_key="k")


def test_messages_of_one_target_share_the_external_id_and_are_sequenced(
    tenant_a: Tenant, sf_conn: Connection
) -> None:
    with tenant_context(tenant_a):
        first = enqueue(sf_conn, "lead-a", lead(1))
        second = enqueue(sf_conn, "lead-a", lead(1, company="Acme 2"))
        other = enqueue(sf_conn, "lead-b", lead(2))
    assert second.external_id == first.external_id != other.external_id
    assert (first.sequence, second.sequence, other.sequence) == (1, 2, 1)


def test_delivers_once_and_records_the_attempt(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator
) -> None:
    with tenant_context(tenant_a):
        msg = enqueue(sf_conn, "conv-1", lead(1))
        assert outbox_deliver(message_id=msg.pk) == OutboxStatus.DELIVERED
        msg.refresh_from_db()
        assert msg.delivered_at is not None and msg.vendor_id.startswith("00Q") and msg.attempts == 1
        (attempt,) = OutboxAttempt.objects.filter(message=msg)
        assert attempt.number == 1 and attempt.finished_at is not None and attempt.error == ""
        # A redelivered kick is harmless: nothing to claim.
        assert outbox_deliver(message_id=msg.pk) == OutboxStatus.DELIVERED
        assert outbox_deliver(message_id=10**9) is None
    leads = vendor_rows(sf, "leads")
    assert [ext for ext, _ in leads] == [msg.external_id]
    assert leads[0][1]["Email"] == "lead1@example.test" and leads[0][1]["Company"] == "Acme"


def test_order_per_target_with_interleaved_targets(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[list[str]] = []
    original = outbox._Courier.deliver

    def spy(courier: outbox._Courier, claimed: list[outbox.Claimed]) -> tuple[int, bool]:
        writes.append([c.message.ordering_key + str(c.message.sequence) for c in claimed])
        return original(courier, claimed)

    monkeypatch.setattr(outbox._Courier, "deliver", spy)
    with tenant_context(tenant_a):
        for n, key in enumerate(["a", "b", "a", "c", "b", "a", "c"]):
            enqueue(sf_conn, key, lead(n, company=f"{key} v{n}"))
        assert outbox_relay(connection_id=sf_conn.pk, limit=10) == 7
        assert not OutboxMessage.objects.exclude(status=OutboxStatus.DELIVERED).exists()
        by_key: dict[str, list[OutboxMessage]] = {}
        for msg in OutboxMessage.objects.order_by("sequence"):
            by_key.setdefault(msg.ordering_key, []).append(msg)
    # Each batch holds at most one message per target, in sequence order: three rounds for "a".
    assert writes == [["a1", "b1", "c1"], ["a2", "b2", "c2"], ["a3"]]
    for msgs in by_key.values():
        times = [m.delivered_at for m in msgs if m.delivered_at is not None]
        assert len(times) == len(msgs) and times == sorted(times)
    final = {data["Company"] for _ext, data in vendor_rows(sf, "leads")}
    assert final == {"a v5", "b v4", "c v6"}  # the last write of each target won
    assert len(vendor_rows(sf, "leads")) == 3


def test_a_failing_message_holds_back_its_target_only(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator
) -> None:
    with tenant_context(tenant_a):
        a1 = enqueue(sf_conn, "a", {**lead(1), "last_name": ""})  # Salesforce requires LastName
        a2 = enqueue(sf_conn, "a", lead(1, company="second"))
        b1 = enqueue(sf_conn, "b", lead(2))
        outbox_relay(connection_id=sf_conn.pk)
        statuses = dict(OutboxMessage.objects.values_list("pk", "status"))
        assert statuses == {
            a1.pk: OutboxStatus.DEAD,
            a2.pk: OutboxStatus.PENDING,
            b1.pk: OutboxStatus.DELIVERED,
        }
        assert OutboxAttempt.objects.filter(message=a2).count() == 0  # never tried while a1 is dead
        letter = DeadLetter.objects.get(message=a1)
        deadletter_discard(dead_letter=letter, actor=None)
        assert outbox_due() != []  # a2 became deliverable
        outbox_relay(connection_id=sf_conn.pk)
        assert message(tenant_a, a2.pk).status == OutboxStatus.DELIVERED
    assert sorted(data["Company"] for _ext, data in vendor_rows(sf, "leads")) == ["Acme", "second"]


def test_crash_after_the_vendor_accepted_creates_no_duplicate(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies between the vendor's 201 and our "delivered": the lease runs out, a retry upserts."""

    class Crash(BaseException):
        pass

    def crash(claimed: Any, *, vendor_id: str | None) -> None:
        raise Crash

    with tenant_context(tenant_a):
        msg = enqueue(sf_conn, "conv-1", lead(1))
        monkeypatch.setattr(outbox, "_delivered", crash)
        with pytest.raises(Crash):
            outbox_deliver(message_id=msg.pk)
        monkeypatch.undo()
        assert len(vendor_rows(sf, "leads")) == 1  # the vendor has it ...
        msg.refresh_from_db()
        assert msg.status == OutboxStatus.DELIVERING  # ... we do not know yet
        assert outbox_relay(connection_id=sf_conn.pk) == 0  # leased: nobody claims it meanwhile
        make_due(tenant_a)  # the lease runs out
        assert outbox_relay(connection_id=sf_conn.pk) == 1
        msg.refresh_from_db()
        assert msg.status == OutboxStatus.DELIVERED and msg.attempts == 2
        numbers = list(OutboxAttempt.objects.filter(message=msg).values_list("number", "finished_at"))
        assert [n for n, _ in numbers] == [1, 2] and numbers[0][1] is None
    leads = vendor_rows(sf, "leads")
    assert [ext for ext, _ in leads] == [msg.external_id]  # exactly one record at the vendor


def test_permanent_vendor_error_dead_letters_at_once(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator
) -> None:
    sf.inject(errors=[{"status": 400, "count": 1}])
    with tenant_context(tenant_a):
        msg = enqueue(sf_conn, "conv-1", lead(1))
        assert outbox_deliver(message_id=msg.pk) == OutboxStatus.DEAD
        letter = DeadLetter.objects.get(message=msg)
    assert letter.kind == DeadLetterKind.OUTBOX and letter.status == DeadLetterStatus.OPEN
    assert letter.attempts == 1 and "Injected failure" in letter.errors[0]["error"]
    assert letter.payload == lead(1) and letter.stream == "leads"
    assert vendor_rows(sf, "leads") == []


def test_transient_errors_back_off_then_exhaust_into_a_dead_letter(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, settings: Any
) -> None:
    settings.HUB_OUTBOX_MAX_ATTEMPTS = 3
    settings.HUB_BREAKER_FAILURE_THRESHOLD = 100
    sf.inject(outage="503")
    with tenant_context(tenant_a):
        msg = enqueue(sf_conn, "conv-1", lead(1))
        before = timezone.now()
        assert outbox_deliver(message_id=msg.pk) == OutboxStatus.PENDING
        msg.refresh_from_db()
        assert msg.next_attempt_at > before and msg.last_error
        assert outbox_deliver(message_id=msg.pk) == OutboxStatus.PENDING  # not due yet: no try
        assert msg.attempts == 1
        for expected in (OutboxStatus.PENDING, OutboxStatus.DEAD):
            make_due(tenant_a)
            assert outbox_deliver(message_id=msg.pk) == expected
        letter = DeadLetter.objects.get(message=msg)
    assert letter.attempts == 3 and [e["number"] for e in letter.errors] == [1, 2, 3]
    assert all(e["error"] and e["finished_at"] for e in letter.errors)
    assert letter.error.startswith("Retries exhausted after 3 attempts")


def test_backoff_is_jittered_exponential_capped_and_honours_retry_after(settings: Any) -> None:
    settings.HUB_OUTBOX_RETRY_BASE_MS = 1000
    settings.HUB_OUTBOX_RETRY_MAX_SECONDS = 60
    delays = [backoff_delay(attempts=4) for _ in range(200)]
    assert all(0 <= d <= 8 for d in delays) and len(set(delays)) > 100
    assert all(backoff_delay(attempts=1, retry_after=30) >= 30 for _ in range(20))
    assert backoff_delay(attempts=50, retry_after=3600) == 60


def test_open_breaker_skips_claiming(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, settings: Any
) -> None:
    settings.HUB_BREAKER_FAILURE_THRESHOLD = 1
    sf.inject(outage="503")
    with tenant_context(tenant_a):
        first = enqueue(sf_conn, "a", lead(1))
        second = enqueue(sf_conn, "b", lead(2))
        outbox_relay(connection_id=sf_conn.pk, limit=1)  # one failure opens the breaker
        make_due(tenant_a)
        assert outbox_relay(connection_id=sf_conn.pk) == 0
        tries = dict(OutboxMessage.objects.values_list("pk", "attempts"))
    assert tries == {first.pk: 1, second.pk: 0}


def test_replay_delivers_and_both_actions_are_audited(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, alice: Any
) -> None:
    sf.inject(errors=[{"status": 400, "count": 1}])  # one call: both messages fail together
    with tenant_context(tenant_a):
        replayed = enqueue(sf_conn, "a", lead(1))
        discarded = enqueue(sf_conn, "b", lead(2))
        outbox_relay(connection_id=sf_conn.pk)
        letters = {d.message_id: d for d in DeadLetter.objects.all()}
        assert set(letters) == {replayed.pk, discarded.pk}
        deadletter_replay(dead_letter=letters[replayed.pk], actor=alice)
        deadletter_discard(dead_letter=letters[discarded.pk], actor=alice)
        assert message(tenant_a, replayed.pk).status == OutboxStatus.PENDING
        assert message(tenant_a, replayed.pk).attempts == 0  # a fresh retry budget
        assert outbox_deliver(message_id=replayed.pk) == OutboxStatus.DELIVERED
        assert message(tenant_a, discarded.pk).status == OutboxStatus.DISCARDED
        resolved = {d.message_id: (d.status, d.resolved_by_id) for d in DeadLetter.objects.all()}
        events = list(AuditEvent.objects.filter(action__startswith="deadletter.").order_by("seq"))
        attempt_numbers = list(
            OutboxAttempt.objects.filter(message_id=replayed.pk).values_list("number", flat=True)
        )
    assert resolved == {
        replayed.pk: (DeadLetterStatus.REPLAYED, alice.pk),
        discarded.pk: (DeadLetterStatus.DISCARDED, alice.pk),
    }
    assert [(e.action, e.actor_id) for e in events] == [
        ("deadletter.replayed", alice.pk),
        ("deadletter.discarded", alice.pk),
    ]
    assert attempt_numbers == [1, 2]  # the history continues across the replay
    assert [ext for ext, _ in vendor_rows(sf, "leads")] == [replayed.external_id]
    with tenant_context(tenant_a), pytest.raises(Exception, match="already resolved"):
        deadletter_discard(dead_letter=letters[replayed.pk], actor=alice)


def test_sync_dead_letter_and_replay_queue_the_sync_again(
    tenant_a: Tenant, sf_conn: Connection, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with tenant_context(tenant_a):
        run = SyncRun.objects.create(connection=sf_conn, stream="contacts", trigger="schedule")
        now = timezone.now()
        for n in (1, 2):
            SyncAttempt.objects.create(run=run, number=n, started_at=now, finished_at=now, error=f"503 #{n}")
        letter = deadletter_sync_run(run=run, error="Retries exhausted")
        assert deadletter_sync_run(run=run, error="Retries exhausted") == letter  # idempotent
        assert letter.kind == DeadLetterKind.SYNC and letter.attempts == 2
        assert [e["error"] for e in letter.errors] == ["503 #1", "503 #2"]
        alias = tenant_a.home_region.db_alias
        with django_capture_on_commit_callbacks(using=alias, execute=False) as callbacks:
            deadletter_replay(dead_letter=letter, actor=alice)
        queued = SyncRun.objects.exclude(pk=run.pk).get()
    assert queued.status == RunStatus.QUEUED and queued.stream == "contacts" and queued.trigger == "manual"
    # One sync queued; the audit event of the replay adds the chain's own after-commit hook (SIEM kick).
    queued_tasks = [c for c in callbacks if getattr(c, "func", None) is not run_appended]
    assert len(queued_tasks) == 1


def test_exhausted_sync_task_lands_in_the_dead_letters(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, settings: Any
) -> None:
    from apps.integrations.tasks import sync_stream_task

    settings.HUB_SYNC_MAX_RETRIES = 0
    sf.inject(outage="503")
    kwargs = {"tenant_id": tenant_a.id, "connection_id": str(sf_conn.pk), "stream": "contacts"}
    assert sync_stream_task.apply(kwargs={**kwargs, "trigger": "manual"}).get() == "failed"
    with tenant_context(tenant_a):
        letter = DeadLetter.objects.get()
    assert letter.kind == DeadLetterKind.SYNC and letter.sync_run_id is not None and letter.attempts == 1


def test_erasure_reaches_the_outbox(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, alice: Any
) -> None:
    sf.inject(errors=[{"status": 400, "count": 1}])
    with tenant_context(tenant_a):
        dead = enqueue(sf_conn, "a", lead(1, email="Erase.Me@Example.test"))
        outbox_relay(connection_id=sf_conn.pk)  # dead-lettered, with a payload copy
        delivered = enqueue(sf_conn, "a", lead(1, email="erase.me@example.test"))
        pending = enqueue(sf_conn, "b", lead(2, email="erase.me@example.test"))
        kept = enqueue(sf_conn, "c", lead(3))
        DeadLetter.objects.filter(message=dead).update(status=DeadLetterStatus.OPEN)
        OutboxMessage.objects.filter(pk=delivered.pk).update(status=OutboxStatus.DELIVERED)
    report = erase_subject(tenant=tenant_a, email="ERASE.me@example.test", actor=alice)
    assert report.counts["outbox"] == 4  # three messages and one dead-letter copy
    with tenant_context(tenant_a):
        rows = {m.pk: (m.status, m.payload) for m in OutboxMessage.objects.all()}
        letter = DeadLetter.objects.get(message=dead)
    assert rows[dead.pk] == (OutboxStatus.DISCARDED, {})
    assert rows[delivered.pk] == (OutboxStatus.DELIVERED, {})
    assert rows[pending.pk] == (OutboxStatus.DISCARDED, {})
    assert rows[kept.pk] == (OutboxStatus.PENDING, lead(3))
    assert letter.payload == {} and letter.status == DeadLetterStatus.DISCARDED


def test_relay_due_queues_one_relay_per_connection_until_it_starts(
    tenant_a: Tenant, sf_conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.integrations.services.dispatch import outbox_relay_started
    from apps.integrations.tasks import outbox_relay_due, outbox_relay_task

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(outbox_relay_task, "apply_async", lambda kwargs: sent.append(kwargs))
    with tenant_context(tenant_a):
        enqueue(sf_conn, "a", lead(1))
        enqueue(sf_conn, "b", lead(2))
    assert outbox_due() == [(tenant_a.id, sf_conn.pk)]
    assert outbox_relay_due() == 1
    assert outbox_relay_due() == 0  # a relay is already queued: kicks and ticks coalesce
    outbox_relay_started(tenant_id=tenant_a.id, connection_id=sf_conn.pk)
    assert outbox_relay_due() == 1
    assert sent == [{"tenant_id": tenant_a.id, "connection_id": str(sf_conn.pk)}] * 2


def test_kicks_queue_a_relay_after_commit(
    tenant_a: Tenant,
    sf_conn: Connection,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from apps.integrations.tasks import outbox_relay_task

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(outbox_relay_task, "apply_async", lambda kwargs: sent.append(kwargs))
    alias = tenant_a.home_region.db_alias
    with django_capture_on_commit_callbacks(using=alias, execute=True), tenant_context(tenant_a):
        for n in range(3):
            enqueue(sf_conn, f"k{n}", lead(n))
    assert sent == [{"tenant_id": tenant_a.id, "connection_id": str(sf_conn.pk)}]


def test_relay_task_returns_quietly_when_rows_are_gone(tenant_a: Tenant) -> None:
    from apps.integrations.tasks import outbox_relay_task

    kwargs = {"tenant_id": tenant_a.id, "connection_id": "00000000-0000-0000-0000-000000000000"}
    assert outbox_relay_task.apply(kwargs=kwargs).get() == 0
    assert outbox_relay_task.apply(kwargs={**kwargs, "tenant_id": 10**9}).get() is None


def test_outbox_tasks_are_routed_to_the_outbox_queue() -> None:
    from hub.celery import app

    for name in ("outbox_relay_task", "outbox_relay_due"):
        route = app.amqp.router.route({}, f"apps.integrations.tasks.{name}")
        assert route["queue"].name == "outbox"
