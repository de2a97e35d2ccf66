"""A subject known by phone number only: their synced records and outbox writes are in the access archive
and in the vendors' erasure notices, whatever format the vendor stored the number in; a different number
(or the same one in tenant B) never matches."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import pytest
from django.db import transaction

from apps.core.context import as_ref, tenant_context
from apps.integrations.models import Connection, OutboxMessage, SyncedRecord
from apps.integrations.services.outbox import outbox_enqueue
from apps.integrations.services.subject_requests import (
    OutboxErasureNotifier,
    export_outbox_messages,
    export_synced_records,
)
from apps.policies.dsr import dsr_archive_build, dsr_create, dsr_start
from apps.policies.models import DataSubjectRequest
from apps.policies.registry import Subject
from apps.tenants.models import Tenant
from connectors.erasure import ERASURE_STREAM
from tests.dsr.helpers import synced

pytestmark = pytest.mark.django_db

#: How different vendors store the same number (the subject's), and numbers that are not theirs.
FORMATS = {
    "003PHONE0000000001": ("phone", "+49 (170) 555-0123"),
    "003PHONE0000000002": ("mobile", "+49-170-555-01-23"),
    "003PHONE0000000003": ("mobile_phone", "+491705550123"),
    "003PHONE0000000004": ("contact_phone", "49.170.555.0123"),
}
OTHERS = {
    "003NOTME0000000001": ("phone", "+49 170 5550124"),  # one digit off
    "003NOTME0000000002": ("mobile", "1705550123"),  # a suffix of the number is not the number
    "003NOTME0000000003": ("fax", "+49 170 5550123"),  # not a phone field of a person
}
SUBJECT = Subject.of(email=None, phone="+49 170 555 0123", external_id=None)


def seed(tenant: Tenant, connection: Connection) -> None:
    with tenant_context(tenant):
        for vendor_id, (field, number) in {**FORMATS, **OTHERS}.items():
            record = synced(
                connection,
                stream="contacts",
                vendor_id=vendor_id,
                email=f"{vendor_id.lower()}@example.test",
                name="Person",
            )
            record.fields = {"email": record.email, "first_name": "Person", field: number}
            record.save(update_fields=["fields"])
        with transaction.atomic(using=as_ref(tenant).db_alias):
            for key, number in (("mine", "+49 170-555 01 23"), ("other", "+49 170 5550999")):
                outbox_enqueue(
                    connection=connection,
                    stream="leads",
                    ordering_key=f"lead-{key}",
                    payload={"last_name": key, "company": "Acme", "phone": number},
                )


@pytest.fixture
def phone_seeded(tenant_a: Tenant, tenant_b: Tenant, offline_sf_conn: Connection) -> Connection:
    seed(tenant_a, offline_sf_conn)
    with tenant_context(tenant_b):
        conn_b = Connection(kind="salesforce", name="B", endpoint_region="eu",
                            settings={"login_url": "https://127.0.0.1:1", "client_id": "hub"})  # fmt: skip
        conn_b.set_secrets({"client_secret": "s3cret"})
        conn_b.save()
    seed(tenant_b, conn_b)
    return offline_sf_conn


def test_access_export_finds_synced_records_by_phone_in_any_format(
    tenant_a: Tenant, phone_seeded: Connection
) -> None:
    rows = export_synced_records(tenant=as_ref(tenant_a), subject=SUBJECT, limit=100)
    assert sorted(r["external_id"] for r in rows) == sorted(FORMATS)
    assert {r["connection"] for r in rows} == {"Salesforce"}  # tenant B's copies never cross


def test_access_export_finds_outbox_messages_by_phone(tenant_a: Tenant, phone_seeded: Connection) -> None:
    rows = export_outbox_messages(tenant=as_ref(tenant_a), subject=SUBJECT, limit=100)
    assert [r["payload"]["last_name"] for r in rows] == ["mine"]
    assert rows[0]["connection"] == "Salesforce"


def test_another_number_finds_nothing_of_the_subject(tenant_a: Tenant, phone_seeded: Connection) -> None:
    other = Subject.of(email=None, phone="+49 170 5550124", external_id=None)
    rows = export_synced_records(tenant=as_ref(tenant_a), subject=other, limit=100)
    assert [r["external_id"] for r in rows] == ["003NOTME0000000001"]
    assert export_outbox_messages(tenant=as_ref(tenant_a), subject=other, limit=100) == []
    nobody = Subject.of(email=None, phone="+1 555 0100", external_id=None)
    assert export_synced_records(tenant=as_ref(tenant_a), subject=nobody, limit=100) == []


def test_archive_limit_applies_to_phone_matches(tenant_a: Tenant, phone_seeded: Connection) -> None:
    rows = export_synced_records(tenant=as_ref(tenant_a), subject=SUBJECT, limit=2)
    assert len(rows) == 2 and {r["external_id"] for r in rows} <= set(FORMATS)


def test_erasure_notice_names_the_records_found_by_phone(
    tenant_a: Tenant, phone_seeded: Connection, django_capture_on_commit_callbacks: Any
) -> None:
    ref = as_ref(tenant_a)
    with django_capture_on_commit_callbacks(using=ref.db_alias):
        notices = OutboxErasureNotifier().notify(tenant=ref, subject=SUBJECT, request_id="req-phone")
    assert [(n.kind, n.state) for n in notices] == [("salesforce", "pending")]
    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get(stream=ERASURE_STREAM, connection=phone_seeded)
    assert message.payload["records"] == [
        {"stream": "contacts", "id": vendor_id} for vendor_id in sorted(FORMATS)
    ]
    # A phone-only subject gives the vendor no e-mail to look up, and the number is not sent either.
    assert "lookup_email" not in message.payload
    assert "5550123" not in str(message.payload)


def test_erasure_notice_for_another_number_names_only_their_record(
    tenant_a: Tenant, phone_seeded: Connection, django_capture_on_commit_callbacks: Any
) -> None:
    ref = as_ref(tenant_a)
    other = Subject.of(email=None, phone="49-170-5550124", external_id=None)
    with django_capture_on_commit_callbacks(using=ref.db_alias):
        OutboxErasureNotifier().notify(tenant=ref, subject=other, request_id="req-other")
    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get(stream=ERASURE_STREAM, connection=phone_seeded)
    assert message.payload["records"] == [{"stream": "contacts", "id": "003NOTME0000000001"}]


def test_access_request_by_phone_archives_the_records_and_writes(
    tenant_a: Tenant, alice: Any, phone_seeded: Connection
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", phone="49 170 555 0123", actor=alice)
    dsr_start(tenant=tenant_a, dsr=dsr, actor=alice)
    built = dsr_archive_build(tenant=tenant_a, request_id=dsr.pk)
    assert built is not None and built.evidence["archive"]["counts"]["synced_records"] == len(FORMATS)
    with tenant_context(tenant_a):
        raw = DataSubjectRequest.objects.get(pk=dsr.pk).archive
    assert raw is not None
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(raw)))
    records = json.loads(archive.read("synced_records.json"))["rows"]
    assert sorted(r["external_id"] for r in records) == sorted(FORMATS)
    writes = json.loads(archive.read("outbox_messages.json"))["rows"]
    assert [w["payload"]["last_name"] for w in writes] == ["mine"]
    everything = b"".join(archive.read(name) for name in archive.namelist()).decode()
    for foreign in (*OTHERS, "5550124", "5550999"):
        assert foreign not in everything


def test_erasure_by_phone_tells_the_vendor_which_records(
    tenant_a: Tenant, alice: Any, phone_seeded: Connection
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="erasure", phone="+49 170 5550123", actor=alice)
    started = dsr_start(tenant=tenant_a, dsr=dsr, actor=alice)
    assert [n["kind"] for n in started.evidence["notifications"]] == ["salesforce"]
    assert started.evidence["erasure"]["counts"]["synced_records"] == len(FORMATS)
    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get(stream=ERASURE_STREAM)
        left = set(SyncedRecord.objects.values_list("external_id", flat=True))
    # The notice was queued before the hub's copies went: it names every record the number found.
    assert message.payload["records"] == [{"stream": "contacts", "id": v} for v in sorted(FORMATS)]
    assert left == set(OTHERS)
