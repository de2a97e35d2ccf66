"""Retiring old data keys: `rotate_keys --destroy-retired` and the bounded, expiring key cache.

Real PostgreSQL (every region database) and the real command: after a rotation the old version's wrapped
material is deleted only once no row uses it; a destroyed version never decrypts again, not even from a
process's cache (another process destroying it is simulated by updating the row directly).
"""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings

from apps.audit.models import AuditEvent
from apps.core.context import as_ref, tenant_context
from apps.security import crypto
from apps.security.fields import Ciphertext
from apps.security.models import DataKey, VaultEntry
from apps.security.services import RetiredKeyInUse, data_keys_destroy_retired, rotate_data_key
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db

SECRET = "iban DE89 3704 0044 0532 0130 00"


def _raw(tenant: Tenant, entry_id: Any) -> str:
    with connections[f"region_{tenant.region_code}"].cursor() as cursor:
        cursor.execute("SELECT value FROM security_vaultentry WHERE id = %s", [entry_id])
        return str(cursor.fetchone()[0])


def _key_row(tenant: Tenant, version: int) -> tuple[str, Any, Any]:
    with connections[f"region_{tenant.region_code}"].cursor() as cursor:
        cursor.execute(
            "SELECT status, wrapped_key, destroyed_at FROM security_datakey "
            "WHERE tenant_id = %s AND version = %s",
            [tenant.id, version],
        )
        return cursor.fetchone()


def test_rotate_reencrypt_destroy_old_version_gone_and_data_still_decrypts(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    with tenant_context(tenant_a):
        entry = VaultEntry.objects.create(token="r1", kind="secret", value=SECRET)
        old_ciphertext = _raw(tenant_a, entry.pk)
    assert old_ciphertext.startswith("hub1$1$")
    with tenant_context(tenant_b):
        VaultEntry.objects.create(token="b1", kind="secret", value="tenant b keeps its key")

    call_command("rotate_keys", "--tenant", tenant_a.slug, stdout=StringIO())
    assert _raw(tenant_a, entry.pk).startswith("hub1$2$")
    out = StringIO()
    call_command("rotate_keys", "--destroy-retired", stdout=out)

    assert "tenant-a: destroyed data key v1" in out.getvalue()
    assert "tenant-b: no retired data key" in out.getvalue()
    status, wrapped, destroyed_at = _key_row(tenant_a, 1)
    assert (status, wrapped) == ("destroyed", None) and destroyed_at is not None
    assert _key_row(tenant_a, 2)[0] == "active" and _key_row(tenant_a, 2)[1] is not None
    assert _key_row(tenant_b, 1)[0] == "active"  # the other tenant's key is untouched
    crypto._key_cache.clear()
    with tenant_context(tenant_a):
        assert VaultEntry.objects.get(pk=entry.pk).value == SECRET  # current data still decrypts
        # A copy of the old ciphertext (an old backup) no longer decrypts: its key is gone, said clearly.
        restored = VaultEntry.objects.get(pk=entry.pk)
        restored.value = Ciphertext(old_ciphertext)
        with pytest.raises(crypto.DecryptionFailed, match="version 1 was destroyed"):
            _ = restored.value
        event = AuditEvent.objects.get(action="security.data_key_destroyed")
    assert (event.outcome, event.changes) == ("success", {"versions": [1], "rows_using": {}})
    # Destroying again is a no-op; rewrapping under a new master key skips destroyed keys.
    call_command("rotate_keys", "--destroy-retired", "--tenant", tenant_a.slug, stdout=StringIO())
    call_command("rotate_keys", "--master", "--tenant", tenant_a.slug, stdout=StringIO())


def test_destroy_refused_while_a_row_still_uses_the_old_version(tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        kept = VaultEntry.objects.create(token="k1", kind="secret", value=SECRET)
        VaultEntry.objects.create(token="k2", kind="secret", value="second")
        stale = _raw(tenant_a, kept.pk)
    rotate_data_key(tenant=tenant_a)
    # A row written back with the old version (a restore, or a value the rotation could not rewrite).
    with connections["region_eu"].cursor() as cursor:
        cursor.execute("UPDATE security_vaultentry SET value = %s WHERE id = %s", [stale, kept.pk])

    err = StringIO()
    with pytest.raises(CommandError, match="still in use and were kept"):
        call_command("rotate_keys", "--destroy-retired", stdout=StringIO(), stderr=err)
    refusal = "tenant-a: refused, data key v1 still encrypts 1 value(s) (security.VaultEntry: 1)"
    assert refusal in err.getvalue()
    assert _key_row(tenant_a, 1)[0] == "retired" and _key_row(tenant_a, 1)[1] is not None
    crypto._key_cache.clear()
    with tenant_context(tenant_a):
        assert VaultEntry.objects.get(pk=kept.pk).value == SECRET  # nothing was lost
        event = AuditEvent.objects.get(action="security.data_key_destroyed")
    assert event.outcome == "failure" and event.changes["rows_using"] == {"security.VaultEntry": 1}

    # A second rotation rewrites it; then v1 and v2 (both retired, unused) are destroyed.
    rotate_data_key(tenant=tenant_a)
    assert data_keys_destroy_retired(tenant=tenant_a) == [1, 2]
    with tenant_context(tenant_a):
        assert VaultEntry.objects.get(pk=kept.pk).value == SECRET


def test_usage_is_checked_in_every_region_database(tenant_a: Tenant, tenant_b: Tenant) -> None:
    """A value of tenant A left in another region's database (a copy after a move) keeps its key."""
    with tenant_context(tenant_a):
        entry = VaultEntry.objects.create(token="moved", kind="secret", value=SECRET)
        raw = _raw(tenant_a, entry.pk)
    rotate_data_key(tenant=tenant_a)
    with connections["region_us"].cursor() as cursor:
        cursor.execute(
            "INSERT INTO security_vaultentry (id, tenant_id, token, kind, value, created_at, updated_at) "
            "VALUES (gen_random_uuid(), %s, 'left-behind', 'secret', %s, now(), now())",
            [tenant_a.id, raw],
        )
    with pytest.raises(RetiredKeyInUse) as refused:
        data_keys_destroy_retired(tenant=tenant_a)
    assert refused.value.usage == {"security.VaultEntry": 1}
    assert _key_row(tenant_a, 1)[0] == "retired"


def test_a_version_destroyed_by_another_process_stops_decrypting_after_the_cache_ttl(
    tenant_a: Tenant,
) -> None:
    with override_settings(HUB_DATA_KEY_CACHE_TTL=1):
        crypto._key_cache.clear()
        with tenant_context(tenant_a):
            entry = VaultEntry.objects.create(token="ttl", kind="secret", value=SECRET)
            raw = _raw(tenant_a, entry.pk)
            assert VaultEntry.objects.get(pk=entry.pk).value == SECRET  # v1 now cached here
            assert (tenant_a.region_code, tenant_a.id, 1) in crypto._key_cache
            # Another process destroys v1 (its eviction cannot reach this process's cache).
            DataKey.objects.filter(version=1).update(
                status=DataKey.Status.DESTROYED, wrapped_key=None, destroyed_at="2026-01-01T00:00:00Z"
            )
            time.sleep(1.2)
            copy = VaultEntry.objects.get(pk=entry.pk)
            assert copy.__dict__["value"] == raw
            with pytest.raises(crypto.DecryptionFailed, match="was destroyed"):
                _ = copy.value


def test_the_key_cache_never_exceeds_its_bound(tenant_a: Tenant, tenant_b: Tenant) -> None:
    with override_settings(HUB_DATA_KEY_CACHE_SIZE=3):
        crypto._key_cache.clear()
        values = {}
        for tenant in (tenant_a, tenant_b):
            for round_ in range(4):  # versions 1..4 per tenant: 8 keys through a cache of 3
                with tenant_context(tenant):
                    entry = VaultEntry.objects.create(
                        token=f"{tenant.slug}-{round_}", kind="s", value=f"v{round_}"
                    )
                    values[(tenant.pk, entry.pk)] = f"v{round_}"
                    assert len(crypto._key_cache) <= 3
                    crypto.create_data_key(as_ref(tenant), retire_current=True)
        for (tenant_pk, entry_pk), expected in values.items():
            with tenant_context(Tenant.objects.get(pk=tenant_pk)):
                assert VaultEntry.objects.get(pk=entry_pk).value == expected  # evicted keys reload
                assert len(crypto._key_cache) <= 3
