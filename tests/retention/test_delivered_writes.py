"""Retention of the outbox (delivered writes to vendors carry personal data) and its erasure by phone.

Writes are delivered to the Salesforce simulator for real; the purge keeps the newest write per target
record (blanked) because the next write to that record must upsert by the same hub external id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from apps.core.context import tenant_context
from apps.integrations.models import (
    Connection,
    DeadLetter,
    DeadLetterStatus,
    OutboxAttempt,
    OutboxMessage,
    OutboxStatus,
)
from apps.integrations.services.deadletters import deadletter_discard
from apps.integrations.services.outbox import outbox_enqueue, outbox_relay
from apps.policies.models import Category
from apps.policies.services import erase_subject, policy_update, retention_enforce
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.outbox import lead, make_due, vendor_rows

pytestmark = pytest.mark.django_db


def enqueue(connection: Connection, key: str, payload: dict[str, Any]) -> OutboxMessage:
    with transaction.atomic(using=connection._state.db):
        return outbox_enqueue(connection=connection, stream="leads", payload=payload, ordering_key=key)


def relay(tenant: Tenant, connection: Connection) -> None:
    with tenant_context(tenant):
        make_due(tenant)
        outbox_relay(connection_id=connection.pk)


def rows(tenant: Tenant) -> dict[int, tuple[str, dict[str, Any]]]:
    with tenant_context(tenant):
        return {m.pk: (m.status, m.payload) for m in OutboxMessage.objects.all()}


def test_delivered_writes_past_the_policy_are_purged_keeping_the_newest_per_record_blanked(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator
) -> None:
    with tenant_context(tenant_a):
        first = enqueue(sf_conn, "conv-1", lead(1))
        second = enqueue(sf_conn, "conv-1", lead(1, company="Acme Two"))
        single = enqueue(sf_conn, "conv-2", lead(2))
    relay(tenant_a, sf_conn)
    assert {status for status, _ in rows(tenant_a).values()} == {OutboxStatus.DELIVERED}
    with tenant_context(tenant_a):
        pending = enqueue(sf_conn, "conv-3", lead(3))  # not delivered: never purged
        assert OutboxAttempt.objects.filter(message_id=first.pk).exists()
    later = timezone.now() + timedelta(days=31)  # the default policy keeps delivered writes 30 days

    report = retention_enforce(tenant=tenant_a, now=later)

    assert report.counts[Category.DELIVERED_WRITES] == 3  # first deleted, second and single blanked
    left = rows(tenant_a)
    assert set(left) == {second.pk, single.pk, pending.pk}
    assert left[second.pk] == (OutboxStatus.DELIVERED, {})
    assert left[single.pk] == (OutboxStatus.DELIVERED, {})
    assert (
        left[pending.pk][0] == OutboxStatus.PENDING and left[pending.pk][1]["email"] == "lead3@example.test"
    )
    with tenant_context(tenant_a):
        assert not OutboxAttempt.objects.filter(message_id=first.pk).exists()
    # Running again finds nothing more (idempotent), and a later write to conv-1 still updates the same
    # vendor record: the kept row carries the hub external id.
    assert retention_enforce(tenant=tenant_a, now=later).counts[Category.DELIVERED_WRITES] == 0
    with tenant_context(tenant_a):
        third = enqueue(sf_conn, "conv-1", lead(1, company="Acme Three"))
    assert third.external_id == first.external_id and third.sequence == 3
    relay(tenant_a, sf_conn)
    conv1 = [data for ext, data in vendor_rows(sf, "leads") if ext == first.external_id]
    assert len(conv1) == 1 and conv1[0]["Company"] == "Acme Three"


def test_recent_writes_keep_forever_and_other_tenants_are_left_alone(
    tenant_a: Tenant, tenant_b: Tenant, sf_conn: Connection, sf: SalesforceSimulator
) -> None:
    with tenant_context(tenant_a):
        enqueue(sf_conn, "conv-1", lead(1))
        enqueue(sf_conn, "conv-1", lead(1, company="B"))
    relay(tenant_a, sf_conn)
    assert retention_enforce(tenant=tenant_a).counts[Category.DELIVERED_WRITES] == 0  # delivered today
    policy_update(tenant=tenant_a, values={"delivered_write_retention_days": None})
    far = timezone.now() + timedelta(days=5000)
    assert Category.DELIVERED_WRITES not in retention_enforce(tenant=tenant_a, now=far).counts
    assert len(rows(tenant_a)) == 2
    assert retention_enforce(tenant=tenant_b, now=far).counts[Category.DELIVERED_WRITES] == 0
    assert len(rows(tenant_a)) == 2


def test_dead_letters_wait_for_the_operator_and_resolved_ones_go_with_their_message(
    tenant_a: Tenant, sf_conn: Connection, sf: SalesforceSimulator, alice: Any
) -> None:
    sf.inject(errors=[{"status": 400, "count": 1}])  # one call carries both: two dead letters
    with tenant_context(tenant_a):
        dead = enqueue(sf_conn, "conv-1", lead(1))
        discarded = enqueue(sf_conn, "conv-2", lead(2))
    relay(tenant_a, sf_conn)
    with tenant_context(tenant_a):
        letters = {letter.message_id: letter for letter in DeadLetter.objects.all()}
        assert set(letters) == {dead.pk, discarded.pk}
        deadletter_discard(dead_letter=letters[discarded.pk], actor=alice)
        follow_up = enqueue(sf_conn, "conv-2", lead(2, company="Later"))
    relay(tenant_a, sf_conn)
    far = timezone.now() + timedelta(days=60)

    retention_enforce(tenant=tenant_a, now=far)

    left = rows(tenant_a)
    assert left[dead.pk][0] == OutboxStatus.DEAD and left[dead.pk][1]["email"] == "lead1@example.test"
    assert discarded.pk not in left  # superseded by the follow-up, its resolved letter with it
    assert left[follow_up.pk] == (OutboxStatus.DELIVERED, {})
    with tenant_context(tenant_a):
        assert list(DeadLetter.objects.values_list("message_id", "status")) == [
            (dead.pk, DeadLetterStatus.OPEN)
        ]


def test_erasure_blanks_outbox_payloads_that_carry_the_subjects_phone(
    tenant_a: Tenant, offline_sf_conn: Connection, alice: Any
) -> None:
    with tenant_context(tenant_a):
        by_phone = enqueue(offline_sf_conn, "conv-1", {**lead(1), "phone": "+49 (170) 123-4567"})
        other = enqueue(offline_sf_conn, "conv-2", {**lead(2), "phone": "+49 170 7654321"})
    report = erase_subject(tenant=tenant_a, phone="49 170 1234567", actor=alice)
    assert report.counts["outbox"] == 1
    left = rows(tenant_a)
    assert left[by_phone.pk] == (OutboxStatus.DISCARDED, {})
    assert left[other.pk][0] == OutboxStatus.PENDING and left[other.pk][1]["phone"] == "+49 170 7654321"
