"""Access archives (GDPR art. 15): one JSON file per category with the subject's data and nobody else's, a
signed manifest with each file's sha256, stored encrypted, downloadable by admins only (audited), expired."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit import signing
from apps.audit.chain import manifest_bytes
from apps.audit.models import AuditEvent
from apps.core.context import as_ref, tenant_context
from apps.policies.dsr import dsr_archive_build, dsr_archives_expire, dsr_create, dsr_start
from apps.policies.models import DataSubjectRequest, RequestStatus
from apps.tenants.models import Tenant
from tests.dsr.helpers import EMAIL, OTHER_EMAIL, USER_REF, Seeded
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def build(tenant: Tenant, actor: Any, **identifiers: Any) -> DataSubjectRequest:
    dsr = dsr_create(tenant=tenant, kind="access", actor=actor, **identifiers)
    dsr_start(tenant=tenant, dsr=dsr, actor=actor)
    built = dsr_archive_build(tenant=tenant, request_id=dsr.pk)  # what the queued task runs
    assert built is not None
    return built


def archive_of(tenant: Tenant, dsr: DataSubjectRequest) -> zipfile.ZipFile:
    with tenant_context(tenant):
        raw = DataSubjectRequest.objects.get(pk=dsr.pk).archive
    assert raw is not None
    return zipfile.ZipFile(io.BytesIO(base64.b64decode(raw)))


def test_archive_holds_each_category_of_the_subject_and_nobody_else(
    tenant_a: Tenant, alice: Any, seeded: Seeded
) -> None:
    client = Client()
    login_verified(client, alice)  # reading the transcript is audited: the archive says who read it
    detail = reverse(
        "chat:conversation-detail", kwargs={"tenant_slug": tenant_a.slug, "pk": seeded.conversation.pk}
    )
    assert client.get(detail).status_code == 200
    dsr = build(tenant_a, alice, email=EMAIL, user_ref=USER_REF)
    assert dsr.status == RequestStatus.COMPLETED and dsr.completed_at is not None
    zf = archive_of(tenant_a, dsr)
    names = set(zf.namelist())
    assert names == {
        "manifest.json",
        "audit_references.json",
        "chat_created_records.json",
        "chat_transcripts.json",
        "chat_transcript_audit.json",
        "outbox_messages.json",
        "synced_records.json",
    }
    files = {name: json.loads(zf.read(name)) for name in names}

    records = files["synced_records.json"]["rows"]
    assert [(r["external_id"], r["email"], r["vendor"]) for r in records] == [
        ("003SUBJECT0000001", EMAIL, "salesforce")
    ]
    outbox = files["outbox_messages.json"]["rows"]
    assert [(m["stream"], m["payload"]["email"], m["payload"]["last_name"]) for m in outbox] == [
        ("leads", EMAIL, "Subject")
    ]
    transcripts = files["chat_transcripts.json"]["rows"]
    assert [t["id"] for t in transcripts] == [str(seeded.conversation.pk)]
    assert transcripts[0]["user_ref"] == USER_REF
    assert [m["text"] for m in transcripts[0]["messages"]] == [
        "My order never arrived",
        "A ticket was opened.",
    ]
    created = files["chat_created_records.json"]["rows"]
    assert [(c["type"], c["reference"], c["connector"]) for c in created] == [
        ("create_ticket", "hub-ticket-1", "salesforce")
    ]
    viewed = files["chat_transcript_audit.json"]["rows"]
    assert [(e["action"], e["actor_label"], e["target_id"]) for e in viewed] == [
        ("chat.transcript_viewed", "alice", str(seeded.conversation.pk))
    ]
    audit = files["audit_references.json"]["rows"]
    assert {"dsr.created", "dsr.started"} <= {e["action"] for e in audit}
    assert all(e["target_id"] == str(dsr.pk) for e in audit)

    everything = b"".join(zf.read(name) for name in names).decode()
    for foreign in (
        OTHER_EMAIL,
        "003OTHER000000001",
        "Someone else's words",
        "Tenant B transcript",
        "widget-user-9999",
    ):
        assert foreign not in everything

    manifest = files["manifest.json"]
    assert manifest["counts"] == {
        "audit_references": len(audit),
        "chat_created_records": 1,
        "chat_transcript_audit": 1,
        "chat_transcripts": 1,
        "outbox_messages": 1,
        "synced_records": 1,
    }
    assert manifest["subject"] == dsr.pseudonyms and EMAIL not in json.dumps(manifest)
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(zf.read(name)).hexdigest() == digest
    assert signing.verify(manifest_bytes(manifest), manifest["signature"], manifest["public_key"])
    tampered = {**manifest, "counts": {**manifest["counts"], "synced_records": 0}}
    assert not signing.verify(manifest_bytes(tampered), manifest["signature"], manifest["public_key"])
    # The evidence keeps the digest and counts, not the data.
    evidence = dsr.evidence["archive"]
    with tenant_context(tenant_a):
        raw = DataSubjectRequest.objects.get(pk=dsr.pk).archive
    assert raw is not None
    assert evidence["sha256"] == hashlib.sha256(base64.b64decode(raw)).hexdigest()
    assert evidence["counts"] == manifest["counts"]


def test_archive_is_stored_encrypted(tenant_a: Tenant, alice: Any, seeded: Seeded) -> None:
    dsr = build(tenant_a, alice, email=EMAIL)
    with connections[as_ref(tenant_a).db_alias].cursor() as cursor:
        cursor.execute("SELECT archive FROM policies_datasubjectrequest WHERE id = %s", [dsr.pk])
        stored = cursor.fetchone()[0]
    # A zip in base64 starts "UEsDB" (PK\x03\x04): the column holds ciphertext, not the archive.
    assert stored and "UEsDB" not in stored and EMAIL not in stored


def test_a_subject_with_nothing_gets_empty_categories(tenant_a: Tenant, alice: Any, seeded: Seeded) -> None:
    dsr = build(tenant_a, alice, email="nobody@example.test")
    counts = dsr.evidence["archive"]["counts"]
    assert {k: v for k, v in counts.items() if k != "audit_references"} == {
        "chat_created_records": 0,
        "chat_transcript_audit": 0,
        "chat_transcripts": 0,
        "outbox_messages": 0,
        "synced_records": 0,
    }


def test_build_is_idempotent_and_cut_at_the_limit(
    tenant_a: Tenant, alice: Any, seeded: Seeded, settings: Any
) -> None:
    settings.HUB_DSR_EXPORT_LIMIT = 10
    dsr = build(tenant_a, alice, email=EMAIL)
    first = dsr.evidence["archive"]["sha256"]
    again = dsr_archive_build(tenant=tenant_a, request_id=dsr.pk)
    assert again is None  # completed: a redelivered task does nothing
    with tenant_context(tenant_a):
        assert DataSubjectRequest.objects.get(pk=dsr.pk).evidence["archive"]["sha256"] == first
        assert AuditEvent.objects.filter(action="dsr.completed", target_id=str(dsr.pk)).count() == 1


def download_url(tenant: Tenant, dsr: DataSubjectRequest) -> str:
    return reverse("policies:dsr-download", kwargs={"tenant_slug": tenant.slug, "pk": dsr.pk})


def test_download_by_admin_is_audited_and_refused_to_others(
    client: Client, tenant_a: Tenant, alice: Any, officer: Any, connor: Any, charlie: Any, seeded: Seeded
) -> None:
    dsr = build(tenant_a, alice, email=EMAIL)
    login_verified(client, alice)
    response = client.get(download_url(tenant_a, dsr))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip" and response["Cache-Control"] == "no-store"
    assert hashlib.sha256(response.content).hexdigest() == dsr.evidence["archive"]["sha256"]
    with tenant_context(tenant_a):
        event = AuditEvent.objects.get(action="dsr.archive_downloaded")
    assert event.actor_id == alice.pk and event.target_id == str(dsr.pk)
    assert EMAIL not in repr(event.changes)
    # A compliance officer reads the register but does not download personal data.
    login_verified(client, officer)
    assert client.get(download_url(tenant_a, dsr)).status_code == 403
    detail = reverse("policies:dsr-detail", kwargs={"tenant_slug": tenant_a.slug, "pk": dsr.pk})
    page = client.get(detail)
    assert page.status_code == 200 and EMAIL not in page.content.decode()  # identifiers: admins only
    login_verified(client, connor)
    assert client.get(detail).status_code == 403
    login_verified(client, charlie)
    assert client.get(download_url(tenant_a, dsr)).status_code == 404
    assert client.get(detail).status_code == 404
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="dsr.archive_downloaded").count() == 1


def test_archives_expire_and_the_evidence_stays(
    client: Client, tenant_a: Tenant, alice: Any, seeded: Seeded
) -> None:
    dsr = build(tenant_a, alice, email=EMAIL)
    assert dsr_archives_expire(now=timezone.now() + timedelta(days=6)) == 0
    assert dsr_archives_expire(now=timezone.now() + timedelta(days=8)) == 1
    with tenant_context(tenant_a):
        stored = DataSubjectRequest.objects.get(pk=dsr.pk)
    assert (
        stored.archive is None and stored.evidence["archive"]["sha256"] == dsr.evidence["archive"]["sha256"]
    )
    login_verified(client, alice)
    assert client.get(download_url(tenant_a, dsr)).status_code == 404
