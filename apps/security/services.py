"""Key rotation and tokenization: the writes of the security app."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.context import TenantRef, as_ref, tenant_context
from apps.core.errors import Conflict
from apps.security import crypto
from apps.security.fields import associated_data
from apps.security.keys import master_key_provider
from apps.security.models import DataKey, KeyRotation, VaultEntry
from apps.security.selectors import data_key_usage, encrypted_columns

Progress = Callable[[KeyRotation], None]


class RetiredKeyInUse(Conflict):
    """Retired data key versions still encrypt some rows: destroying them would lose those values."""

    def __init__(self, *, versions: list[int], usage: dict[str, int]) -> None:
        self.versions, self.usage = versions, usage
        listed = ", ".join(f"{label}: {count}" for label, count in usage.items())
        names = ", ".join(f"v{v}" for v in versions)
        super().__init__(f"data key {names} still encrypts {sum(usage.values())} value(s) ({listed})")


def rotate_data_key(
    *, tenant: Any, batch_size: int = 500, on_progress: Progress | None = None, actor: Any = None
) -> KeyRotation:
    """Make a new data key active and re-encrypt every encrypted value of the tenant, in batches.

    The hub keeps serving: old versions stay readable until every row is rewritten, and each batch is a
    conditional UPDATE (only rows still holding the ciphertext read), so a concurrent write is never lost.
    """
    ref = as_ref(tenant)
    with tenant_context(ref):
        new_key = crypto.create_data_key(ref, retire_current=True)
        rotation = KeyRotation.objects.create(kind=KeyRotation.Kind.DATA, to_version=new_key.version)
        rotation.rows_total = _count_stale(ref, new_key.version)
        rotation.save(update_fields=["rows_total", "updated_at"])
        for model, fields in encrypted_columns():
            if getattr(model, "hub_silo", None) != "region":
                continue
            for field in fields:
                _reencrypt_column(ref, model, field, new_key.version, batch_size, rotation, on_progress)
        rotation.finished_at = timezone.now()
        rotation.save(update_fields=["finished_at", "updated_at"])
    audit_record(
        "security.data_key_rotated",
        tenant=ref,
        actor=actor,
        target_type="data_key",
        target_id=new_key.version,
        target_label=f"v{new_key.version}",
        changes={"rows_reencrypted": rotation.rows_done, "failures": rotation.failures},
        outcome="success" if rotation.failures == 0 else "failure",
    )
    return rotation


def _stale_where(model: Any, field: Any) -> str:
    """SQL selecting the tenant's values of one column not yet under the target key version."""
    table, column = model._meta.db_table, field.column
    return f'FROM "{table}" WHERE tenant_id = %s AND "{column}" IS NOT NULL AND "{column}" NOT LIKE %s'


def _count_stale(ref: TenantRef, version: int) -> int:
    total = 0
    with connections[ref.db_alias].cursor() as cursor:
        for model, fields in encrypted_columns():
            if getattr(model, "hub_silo", None) != "region":
                continue
            for field in fields:
                where = _stale_where(model, field)
                cursor.execute(f"SELECT count(*) {where}", [ref.id, f"{crypto.PREFIX}${version}$%"])
                total += cursor.fetchone()[0]
    return total


def _reencrypt_column(
    ref: TenantRef,
    model: Any,
    field: Any,
    version: int,
    batch_size: int,
    rotation: KeyRotation,
    on_progress: Progress | None,
) -> None:
    where = _stale_where(model, field)
    table, column, pk = model._meta.db_table, field.column, model._meta.pk.column
    last_pk = None
    connection = connections[ref.db_alias]
    while True:
        params: list[Any] = [ref.id, f"{crypto.PREFIX}${version}$%"]
        after = ""
        if last_pk is not None:
            after = f' AND "{pk}" > %s'
            params.append(last_pk)
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT "{pk}", "{column}" {where}{after} ORDER BY "{pk}" LIMIT %s',
                [*params, batch_size],
            )
            batch = cursor.fetchall()
        if not batch:
            return
        last_pk = batch[-1][0]
        updates = []
        for row_pk, old in batch:
            row = model(pk=row_pk, tenant_id=ref.id)
            aad = associated_data(row, field.name)
            try:
                plain = crypto.decrypt(old, aad=aad)
            except crypto.DecryptionFailed:
                rotation.failures += 1
                continue
            updates.append((row_pk, old, crypto.encrypt(plain, aad=aad, version=version)))
        if updates:
            values = ", ".join(["(%s::uuid, %s, %s)"] * len(updates))
            flat = [item for triple in updates for item in (str(triple[0]), triple[1], triple[2])]
            with transaction.atomic(using=ref.db_alias), connection.cursor() as cursor:
                cursor.execute(
                    f'UPDATE "{table}" AS t SET "{column}" = v.new FROM (VALUES {values}) AS v(id, old, new) '  # noqa: S608
                    f'WHERE t."{pk}" = v.id AND t."{column}" = v.old',
                    flat,
                )
                rotation.rows_done += cursor.rowcount
        rotation.save(update_fields=["rows_done", "failures", "updated_at"])
        if on_progress:
            on_progress(rotation)


def rewrap_data_keys(*, tenant: Any, actor: Any = None) -> int:
    """Re-wrap the tenant's data keys under the current master key (after adding a new master key)."""
    ref = as_ref(tenant)
    provider = master_key_provider()
    count = 0
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        stale = DataKey.objects.select_for_update().exclude(master_key_id=provider.current_key_id)
        for key in stale.exclude(status=DataKey.Status.DESTROYED):
            if key.wrapped_key is None:  # only destroyed keys lack material (a database constraint)
                continue
            context = crypto._wrap_context(ref, key.version)
            material = provider.unwrap(bytes(key.wrapped_key), key_id=key.master_key_id, context=context)
            key.master_key_id, key.wrapped_key = provider.wrap(material, context=context)
            key.save(update_fields=["master_key_id", "wrapped_key", "updated_at"])
            count += 1
        KeyRotation.objects.create(
            kind=KeyRotation.Kind.MASTER, rows_total=count, rows_done=count, finished_at=timezone.now()
        )
    audit_record(
        "security.master_key_rewrapped",
        tenant=ref,
        actor=actor,
        target_type="master_key",
        target_label=provider.current_key_id,
        changes={"data_keys": count},
    )
    return count


def data_keys_destroy_retired(*, tenant: Any, actor: Any = None) -> list[int]:
    """Delete the wrapped material of the tenant's retired data keys, so old backups cannot be read with them.

    Only once no row, in any database, still holds a value under one of those versions (a rotation that
    finished without failures rewrote them all); otherwise raise RetiredKeyInUse with counts per model and
    destroy nothing. Returns the destroyed versions; audited either way.
    """
    ref = as_ref(tenant)
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        # Locking the retired rows keeps two operators (or a rotation's retire) from racing this check.
        retired = list(
            DataKey.objects.select_for_update().filter(status=DataKey.Status.RETIRED).order_by("version")
        )
        versions = [key.version for key in retired]
        if not versions:
            return []
        usage = data_key_usage(tenant=ref, versions=versions)
        if not usage:
            DataKey.objects.filter(pk__in=[key.pk for key in retired]).update(
                status=DataKey.Status.DESTROYED,
                wrapped_key=None,
                destroyed_at=timezone.now(),
                updated_at=timezone.now(),
            )
    if not usage:
        crypto.forget_keys(ref, versions)
    audit_record(
        "security.data_key_destroyed",
        tenant=ref,
        actor=actor,
        target_type="data_key",
        target_id=",".join(str(v) for v in versions),
        target_label=", ".join(f"v{v}" for v in versions),
        changes={"versions": versions, "rows_using": usage},
        outcome="failure" if usage else "success",
    )
    if usage:
        raise RetiredKeyInUse(versions=versions, usage=usage)
    return versions


# --- tokenization vault --------------------------------------------------------------------------------
def vault_tokenize(*, value: str, kind: str) -> str:
    """Store `value` encrypted and return an opaque token that stands for it in transcripts and logs."""
    token = f"tok_{kind}_{secrets.token_urlsafe(12)}"
    VaultEntry.objects.create(token=token, kind=kind, value=value)
    return token


def vault_reveal(*, token: str) -> str | None:
    entry = VaultEntry.objects.filter(token=token).first()
    return None if entry is None else str(entry.value)


def vault_forget(*, tokens: list[str]) -> int:
    deleted, _ = VaultEntry.objects.filter(token__in=tokens).delete()
    return deleted
