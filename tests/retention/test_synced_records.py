"""Erasure of synced CRM records (apps/integrations/services/sync.py): by e-mail, external id and — the gap
the review found — by phone number, as the vendor formats it, in any phone field of contacts and orders."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from apps.core.context import as_ref, tenant_context
from apps.integrations.models import Connection, SyncedRecord
from apps.integrations.services.sync import sync_stream
from apps.policies.registry import Subject, erasers
from apps.policies.services import erase_subject
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.integrations import offline_connection, sf_connection

pytestmark = pytest.mark.django_db


def record(
    tenant: Tenant, connection: Connection, external_id: str, stream: str = "contacts", **fields: Any
) -> None:
    with tenant_context(tenant):
        SyncedRecord.objects.create(
            connection=connection, stream=stream, external_id=external_id, updated_at=timezone.now(),
            email=str(fields.get("email", "")).lower(), fields=fields, raw={"Id": external_id, **fields},
            content_hash=external_id, synced_at=timezone.now(),
        )  # fmt: skip


def stored(tenant: Tenant) -> set[str]:
    with tenant_context(tenant):
        return set(SyncedRecord.objects.values_list("external_id", flat=True))


def test_erasure_by_phone_deletes_synced_contacts_whatever_the_vendor_format(
    tenant_a: Tenant, sf: SalesforceSimulator, alice: Any
) -> None:
    """Contacts synced from the Salesforce simulator: one is erased by its phone number as the person
    gives it, in another format than the vendor's."""
    connection = sf_connection(tenant_a, sf)
    with tenant_context(tenant_a):
        assert sync_stream(connection_id=connection.pk, stream="contacts", trigger="manual") is not None
        contacts = list(SyncedRecord.objects.filter(stream="contacts").values("external_id", "fields"))
    with_phone = [c for c in contacts if c["fields"].get("phone")]
    assert len(with_phone) >= 2, "the simulator's contacts carry phone numbers"
    target = with_phone[0]
    phone = str(target["fields"]["phone"])
    digits = "".join(ch for ch in phone if ch.isdigit())
    same_number = {
        c["external_id"]
        for c in with_phone
        if "".join(filter(str.isdigit, str(c["fields"]["phone"]))) == digits
    }
    typed = " ".join(
        [digits[:3], digits[3:6], digits[6:]]
    )  # "+1 555-0100"-style vendor text, typed otherwise

    report = erase_subject(tenant=tenant_a, phone=typed, actor=alice)

    assert report.counts["synced_records"] == len(same_number)
    assert stored(tenant_a) == {c["external_id"] for c in contacts} - same_number


def test_erasure_by_phone_covers_every_phone_field_and_orders_of_the_customer(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any
) -> None:
    connection = offline_connection(tenant_a, "salesforce")
    record(tenant_a, connection, "c1", phone="+49 (170) 123-4567")
    record(tenant_a, connection, "c2", mobile="0049 170 1234567"[2:])
    record(tenant_a, connection, "o1", stream="orders", customer_phone="+491701234567", number="100")
    record(tenant_a, connection, "c3", phone="+49 170 7654321", email="john@example.com")
    record(tenant_a, connection, "c4", note="call +49 170 1234567")  # free text is not a phone field
    other = offline_connection(tenant_b, "salesforce")
    record(tenant_b, other, "b1", phone="+49 170 1234567")

    report = erase_subject(tenant=tenant_a, phone="+49 170 123 45 67", actor=alice)

    assert report.counts["synced_records"] == 3
    assert stored(tenant_a) == {"c3", "c4"}
    assert stored(tenant_b) == {"b1"}


def test_erasure_by_email_and_external_id_still_work_and_nothing_else_matches(
    tenant_a: Tenant, alice: Any
) -> None:
    connection = offline_connection(tenant_a, "salesforce")
    record(tenant_a, connection, "c1", email="Jane@Example.com", phone="+1 555 0100")
    record(tenant_a, connection, "003JANE")
    record(tenant_a, connection, "c3", email="john@example.com", phone="+1 555 0199")
    report = erase_subject(tenant=tenant_a, email="jane@example.com", external_id="003JANE", actor=alice)
    assert report.counts["synced_records"] == 2
    assert stored(tenant_a) == {"c3"}
    # A subject with only an identifier nobody holds deletes nothing.
    assert erase_subject(tenant=tenant_a, phone="+1 555 0111", actor=alice).counts["synced_records"] == 0
    assert stored(tenant_a) == {"c3"}


def test_the_eraser_sets_its_own_tenant_context(tenant_a: Tenant, alice: Any) -> None:
    """Handlers are called by the erasure service, a command or a task: none may need a context set."""
    connection = offline_connection(tenant_a, "salesforce")
    record(tenant_a, connection, "c1", phone="+1 555 0100")
    subject = Subject.of(email=None, phone="+1 555 0100", external_id=None)
    assert erasers()["synced_records"](tenant=as_ref(tenant_a), subject=subject) == 1
    assert erasers()["outbox"](tenant=as_ref(tenant_a), subject=subject) == 0
    assert stored(tenant_a) == set()
