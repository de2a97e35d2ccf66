"""Envelope encryption: binding, no plaintext at rest, online rotation, master key re-wrap."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from apps.core.context import tenant_context
from apps.security import crypto
from apps.security.fields import Ciphertext
from apps.security.keys import master_key_provider
from apps.security.models import DataKey, KeyRotation, VaultEntry
from apps.security.services import rewrap_data_keys, rotate_data_key, vault_reveal, vault_tokenize
from apps.tenants.models import Tenant
from tests.fixtures.database import pg_dump_all

SECRET = "sk-live-PLAINTEXT-should-never-be-at-rest-4242"


def _raw_value(tenant: Tenant, entry_id: Any) -> str:
    with connections[f"region_{tenant.region_code}"].cursor() as cursor:
        cursor.execute("SELECT value FROM security_vaultentry WHERE id = %s", [entry_id])
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_value_is_encrypted_at_rest_and_reads_back(tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        entry = VaultEntry.objects.create(token="t1", kind="email", value=SECRET)
        raw = _raw_value(tenant_a, entry.pk)
        assert raw.startswith("hub1$1$")
        assert SECRET not in raw
        assert VaultEntry.objects.get(pk=entry.pk).value == SECRET
        assert DataKey.objects.get().status == "active"


@pytest.mark.django_db
def test_ciphertext_copied_to_another_row_or_tenant_does_not_decrypt(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    with tenant_context(tenant_a):
        source = VaultEntry.objects.create(token="src", kind="email", value=SECRET)
        other = VaultEntry.objects.create(token="dst", kind="email", value="other")
        stolen = _raw_value(tenant_a, source.pk)
        with connections["region_eu"].cursor() as cursor:
            cursor.execute("UPDATE security_vaultentry SET value = %s WHERE id = %s", [stolen, other.pk])
        with pytest.raises(crypto.DecryptionFailed):
            _ = VaultEntry.objects.get(pk=other.pk).value
    with tenant_context(tenant_b):
        foreign = VaultEntry(token="x", kind="email")
        foreign.value = Ciphertext(stolen)
        with pytest.raises(crypto.DecryptionFailed):
            _ = foreign.value


@pytest.mark.django_db
def test_tampered_ciphertext_fails(tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        entry = VaultEntry.objects.create(token="t", kind="email", value=SECRET)
        raw = _raw_value(tenant_a, entry.pk)
        flipped = raw[:-4] + ("A" if raw[-4] != "A" else "B") + raw[-3:]
        entry.value = Ciphertext(flipped)
        with pytest.raises(crypto.DecryptionFailed):
            _ = entry.value


@pytest.mark.django_db
def test_encrypted_values_are_not_searchable_or_serialized(tenant_a: Tenant) -> None:
    from django.core import serializers
    from django.core.exceptions import FieldError

    with tenant_context(tenant_a):
        entry = VaultEntry.objects.create(token="t", kind="email", value=SECRET)
        with pytest.raises(FieldError):
            list(VaultEntry.objects.filter(value=SECRET))
        dumped = serializers.serialize("json", [VaultEntry.objects.get(pk=entry.pk)])
        assert SECRET not in dumped and "hub1$" in dumped


@pytest.mark.django_db
def test_tokenization_vault_round_trip(tenant_a: Tenant, tenant_b: Tenant) -> None:
    with tenant_context(tenant_a):
        token = vault_tokenize(value="jane@example.com", kind="email")
        assert token.startswith("tok_email_") and "jane" not in token
        assert vault_reveal(token=token) == "jane@example.com"
    with tenant_context(tenant_b):
        assert vault_reveal(token=token) is None


@pytest.mark.django_db(transaction=True)
def test_pg_dump_of_every_database_holds_no_plaintext_secret(tenant_a: Tenant, tenant_b: Tenant) -> None:
    from apps.integrations.models import Connection

    for tenant in (tenant_a, tenant_b):
        with tenant_context(tenant):
            VaultEntry.objects.create(token=f"dump-{tenant.slug}", kind="secret", value=SECRET)
            Connection.objects.create(
                name=f"crm-{tenant.slug}",
                kind="salesforce",
                endpoint_region=tenant.region_code,
                settings={"login_url": "https://login.example.com"},
                credentials=json.dumps({"client_secret": SECRET, "password": "sk-live-hunter2"}),
            )
    dump = pg_dump_all()
    assert "crm-tenant-a" in dump  # connection rows are there, their credentials are not
    assert "dump-tenant-a" in dump and "dump-tenant-b" in dump  # the rows are in the dump...
    assert SECRET not in dump  # ...but never their plaintext
    assert "sk-live" not in dump


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_rotation_of_10000_rows_while_reads_continue(tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        VaultEntry.objects.bulk_create(
            [
                VaultEntry(tenant_id=tenant_a.id, token=f"r{i}", kind="secret", value=f"value-{i}")
                for i in range(10_000)
            ],
            batch_size=2000,
        )
        sample = list(VaultEntry.objects.order_by("token").values_list("pk", flat=True)[:200])
    reads: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def reader() -> None:
        with tenant_context(tenant_a):
            try:
                while not stop.is_set():
                    for entry in VaultEntry.objects.filter(pk__in=sample):
                        assert entry.value == f"value-{entry.token[1:]}"
                        reads.append(1)
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                connections.close_all()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        rotation = rotate_data_key(tenant=tenant_a, batch_size=1000)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert errors == []
    assert len(reads) > 0
    assert (rotation.rows_total, rotation.rows_done, rotation.failures) == (10_000, 10_000, 0)
    with tenant_context(tenant_a):
        assert DataKey.objects.get(version=1).status == "retired"
        assert DataKey.objects.get(version=2).status == "active"
        crypto._key_cache.clear()
        values = dict(VaultEntry.objects.values_list("token", "value"))
        assert all(raw.startswith("hub1$2$") for raw in values.values())
        assert all(entry.value == f"value-{entry.token[1:]}" for entry in VaultEntry.objects.all()[:500])
        assert KeyRotation.objects.get().finished_at is not None
        from apps.audit.models import AuditEvent

        event = AuditEvent.objects.get(action="security.data_key_rotated")
        assert (event.outcome, event.changes) == ("success", {"rows_reencrypted": 10_000, "failures": 0})


@pytest.mark.django_db
def test_master_key_rewrap_lets_the_old_master_key_go(tenant_a: Tenant) -> None:
    old = master_key_provider()
    old_keys = Path(settings.HUB_MASTER_KEY_FILE).read_text()
    old_id = json.loads(old_keys)["keys"][0]["id"]
    old_b64 = json.loads(old_keys)["keys"][0]["key"]
    with tenant_context(tenant_a):
        entry = VaultEntry.objects.create(token="m", kind="secret", value=SECRET)
    new_b64 = "B" * 43 + "="
    with override_settings(HUB_MASTER_KEYS=f"new-1:{new_b64},{old_id}:{old_b64}"):
        master_key_provider.cache_clear()
        assert master_key_provider().current_key_id == "new-1"
        assert rewrap_data_keys(tenant=tenant_a) == 1
    with override_settings(HUB_MASTER_KEYS=f"new-1:{new_b64}"):  # the old master key is gone
        master_key_provider.cache_clear()
        crypto._key_cache.clear()
        with tenant_context(tenant_a):
            assert VaultEntry.objects.get(pk=entry.pk).value == SECRET
            assert DataKey.objects.get().master_key_id == "new-1"
    assert old.current_key_id == old_id
