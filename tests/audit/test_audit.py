"""The tamper-evident audit log: chain, append-only, verification, purge checkpoints, signed exports."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections, transaction
from django.test import RequestFactory
from django.utils import timezone

from apps.audit.chain import GENESIS, link_hash
from apps.audit.models import AuditCheckpoint, AuditEvent, PlatformAuditEvent
from apps.audit.selectors import audit_event_list, audit_verify_chain, audit_verify_export
from apps.audit.services import audit_export, audit_purge, audit_record, censor
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.fixtures.database import SuperuserSql


def _record_many(tenant: Tenant, n: int, action: str = "test.event") -> None:
    for i in range(n):
        audit_record(action, tenant=tenant, target_type="thing", target_id=i, target_label=f"thing {i}")


@pytest.mark.django_db
def test_events_form_a_verifiable_chain(tenant_a: Tenant, alice: Any) -> None:
    request = RequestFactory().post("/x", HTTP_USER_AGENT="pytest-agent", REMOTE_ADDR="10.1.2.3")
    request.request_id = "req-abcdef12"  # type: ignore[attr-defined]
    first = audit_record(
        "member.role_changed",
        tenant=tenant_a,
        actor=alice,
        request=request,
        target_type="membership",
        target_id=7,
        target_label="bob",
        changes={"role": ["viewer", "admin"]},
    )
    second = audit_record("tenant.updated", tenant=tenant_a, actor=alice)
    with tenant_context(tenant_a):
        genesis = AuditEvent.objects.get(seq=1)  # tenant creation opens the chain
    assert genesis.action == "tenant.created"
    assert genesis.prev_hash == GENESIS
    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    assert (first.actor_label, first.ip, first.user_agent, first.request_id) == (
        "alice",
        "10.1.2.3",
        "pytest-agent",
        "req-abcdef12",
    )
    with tenant_context(tenant_a):
        stored = AuditEvent.objects.get(seq=first.seq)
    assert stored.changes == {"role": ["viewer", "admin"]}
    assert audit_verify_chain(tenant=tenant_a).ok
    assert audit_verify_chain(tenant=tenant_a).checked == second.seq


@pytest.mark.django_db
def test_chains_are_per_tenant_and_stored_in_the_tenant_region(tenant_a: Tenant, tenant_b: Tenant) -> None:
    _record_many(tenant_a, 3)
    _record_many(tenant_b, 2)
    with connections["region_eu"].cursor() as cursor:
        cursor.execute("SELECT tenant_id, max(seq) FROM audit_auditevent GROUP BY tenant_id")
        assert cursor.fetchall() == [(tenant_a.id, 1 + 3)]  # tenant.created opens each chain
    with connections["region_us"].cursor() as cursor:
        cursor.execute("SELECT tenant_id, max(seq) FROM audit_auditevent GROUP BY tenant_id")
        assert cursor.fetchall() == [(tenant_b.id, 1 + 2)]
    with tenant_context(tenant_a):
        assert audit_event_list().count() == 4
        assert audit_event_list(filters={"action": "test."}).count() == 3


@pytest.mark.django_db
def test_sensitive_changes_are_censored(tenant_a: Tenant) -> None:
    event = audit_record(
        "connection.updated",
        tenant=tenant_a,
        sensitive=["client_id"],
        changes={
            "password": "hunter2",
            "config": {"api_token": "abc", "url": "https://x"},
            "client_id": "cid",
            "name": "CRM",
        },
    )
    assert event.changes == {
        "password": "***",
        "config": {"api_token": "***", "url": "https://x"},
        "client_id": "***",
        "name": "CRM",
    }
    assert censor({"secret": ""}) == {"secret": ""}


@pytest.mark.django_db
def test_platform_events_go_to_the_control_chain(alice: Any) -> None:
    audit_record("login.succeeded", actor=alice)
    audit_record("login.failed", outcome="failure", target_label="someone")
    assert list(PlatformAuditEvent.objects.order_by("seq").values_list("seq", "action")) == [
        (1, "login.succeeded"),
        (2, "login.failed"),
    ]
    assert audit_verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_cannot_fork_the_chain(tenant_a: Tenant) -> None:
    errors: list[Exception] = []

    def writer() -> None:
        try:
            _record_many(tenant_a, 25)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with tenant_context(tenant_a):
        assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 102))
    assert audit_verify_chain(tenant=tenant_a).ok


@pytest.mark.django_db
def test_database_rejects_update_and_delete(tenant_a: Tenant) -> None:
    _record_many(tenant_a, 1)
    with tenant_context(tenant_a):
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic(using="region_eu"):
            AuditEvent.objects.update(action="tampered")
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic(using="region_eu"):
            AuditEvent.objects.all().delete()
        assert AuditEvent.objects.filter(action="test.event").count() == 1


@pytest.mark.django_db(transaction=True)
def test_verify_pinpoints_a_modified_row(
    tenant_a: Tenant, capsys: pytest.CaptureFixture[str], superuser_sql: SuperuserSql
) -> None:
    _record_many(tenant_a, 5)
    superuser_sql(
        "region_eu",
        "UPDATE audit_auditevent SET target_label = 'innocent' WHERE tenant_id = %s AND seq = 3",
        [tenant_a.id],
    )
    result = audit_verify_chain(tenant=tenant_a)
    assert (result.ok, result.broken_seq, result.checked) == (False, 3, 2)
    assert "modified" in result.reason
    with pytest.raises(CommandError, match="broken chain"):
        call_command("audit_verify", "--tenant", tenant_a.slug)
    assert "BROKEN at #3" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_verify_pinpoints_a_deleted_row(
    tenant_a: Tenant, tenant_b: Tenant, capsys: pytest.CaptureFixture[str], superuser_sql: SuperuserSql
) -> None:
    _record_many(tenant_a, 5)
    _record_many(tenant_b, 2)
    superuser_sql("region_eu", "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq = 4", [tenant_a.id])
    result = audit_verify_chain(tenant=tenant_a)
    assert (result.ok, result.broken_seq) == (False, 4)
    assert "missing" in result.reason
    with pytest.raises(CommandError):
        call_command("audit_verify")
    out = capsys.readouterr().out
    assert "tenant-b: ok (3 events)" in out
    assert "tenant-a: BROKEN at #4" in out


@pytest.mark.django_db
def test_purge_keeps_the_rest_verifiable_and_the_chain_continues(tenant_a: Tenant) -> None:
    _record_many(tenant_a, 3)  # seq 2-4 after tenant.created
    cut = timezone.now()
    _record_many(tenant_a, 2)
    assert audit_purge(tenant=tenant_a, before=cut) == 4
    with tenant_context(tenant_a):
        checkpoint = AuditCheckpoint.objects.get()
        assert (checkpoint.purged_through_seq, checkpoint.purged_count) == (4, 4)
        assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [5, 6]
    assert audit_verify_chain(tenant=tenant_a).ok
    event = audit_record("retention.purged", tenant=tenant_a, changes={"audit_events": 4})
    assert event.seq == 7
    assert audit_verify_chain(tenant=tenant_a).checked == 3


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_signed_export_verifies_offline_and_detects_tampering(
    tenant_a: Tenant, alice: Any, tmp_path: Path, fmt: str
) -> None:
    audit_record("member.invited", tenant=tenant_a, actor=alice, changes={"email": "x@example.com", "n": 1.5})
    _record_many(tenant_a, 3)
    with tenant_context(tenant_a):
        data = audit_export(tenant=tenant_a, events=audit_event_list(), fmt=fmt, actor=alice)
        assert AuditEvent.objects.filter(action="audit.export").count() == 1
    path = tmp_path / f"export.{fmt}.zip"
    path.write_bytes(data)
    result = audit_verify_export(path)
    assert (result.ok, result.checked) == (True, 6)  # tenant.created, member.added (alice), 4 recorded here
    call_command("audit_verify", "--export", str(path))

    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        content = zf.read(manifest["file"]).decode()
    assert manifest["count"] == 6
    assert (manifest["first_seq"], manifest["last_seq"]) == (1, 6)

    def rewrite(new_content: str, new_manifest: dict[str, Any]) -> Path:
        out = tmp_path / f"tampered-{fmt}.zip"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(new_manifest["file"], new_content)
            zf.writestr("manifest.json", json.dumps(new_manifest))
        out.write_bytes(buf.getvalue())
        return out

    tampered = rewrite(content.replace("thing 1", "thing 9"), manifest)
    assert not audit_verify_export(tampered).ok
    import hashlib

    resigned = {
        **manifest,
        "sha256": hashlib.sha256(content.replace("thing 1", "thing 9").encode()).hexdigest(),
    }
    forged = rewrite(content.replace("thing 1", "thing 9"), resigned)
    bad = audit_verify_export(forged)
    assert (bad.ok, bad.reason) == (False, "the manifest signature is invalid")
    with pytest.raises(CommandError, match="BROKEN"):
        call_command("audit_verify", "--export", str(forged))


def test_link_hash_is_deterministic() -> None:
    event = {"seq": 1, "tenant_id": 2, "action": "x", "changes": {"b": 1, "a": [1, 2]}}
    assert link_hash(GENESIS, event) == link_hash(GENESIS, dict(reversed(list(event.items()))))
