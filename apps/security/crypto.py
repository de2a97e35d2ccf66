"""Envelope encryption: per-tenant AES-256-GCM data keys, wrapped by the master key provider.

Ciphertext format: ``hub1$<data key version>$<base64(nonce || ciphertext+tag)>``. The associated data binds
each ciphertext to tenant, model, field and row, so a value copied elsewhere does not decrypt.
Unwrapped keys are cached per (region, tenant, version): a version's key material never changes, so the
cache can never be stale; which version is *active* is always read from the database.
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction

from apps.core.context import TenantRef, current_tenant
from apps.security.keys import NONCE_BYTES, master_key_provider

if TYPE_CHECKING:
    from apps.security.models import DataKey

PREFIX = "hub1"
_key_cache: dict[tuple[str, int, int], AESGCM] = {}


class DecryptionFailed(Exception):
    """A ciphertext did not decrypt: wrong tenant/row/field, altered, or its key is unavailable."""


def _wrap_context(tenant: TenantRef, version: int) -> bytes:
    return f"hub-datakey|{tenant.id}|{version}".encode()


def _load_key(tenant: TenantRef, version: int) -> AESGCM:
    from apps.security.models import DataKey

    cache_key = (tenant.region, tenant.id, version)
    aead = _key_cache.get(cache_key)
    if aead is None:
        row = DataKey.objects.filter(version=version).first()
        if row is None:
            raise DecryptionFailed(f"data key version {version} does not exist for this tenant")
        material = master_key_provider().unwrap(
            bytes(row.wrapped_key), key_id=row.master_key_id, context=_wrap_context(tenant, version)
        )
        aead = _key_cache[cache_key] = AESGCM(material)
    return aead


def active_version(tenant: TenantRef | None = None) -> int:
    """Return the tenant's active data key version, creating version 1 on first use."""
    from apps.security.models import DataKey

    tenant = tenant or current_tenant()
    version = DataKey.objects.filter(status=DataKey.Status.ACTIVE).values_list("version", flat=True).first()
    if version is not None:
        return version
    try:
        return create_data_key(tenant).version
    except IntegrityError:  # another process created it concurrently
        return active_version(tenant)


def create_data_key(tenant: TenantRef, *, retire_current: bool = False) -> DataKey:
    """Make a new data key version the active one (the old one stays readable, status retired)."""
    from apps.security.models import DataKey

    with transaction.atomic(using=tenant.db_alias):
        last = DataKey.objects.select_for_update().order_by("-version").first()
        version = (last.version if last else 0) + 1
        if retire_current:
            DataKey.objects.filter(status=DataKey.Status.ACTIVE).update(status=DataKey.Status.RETIRED)
        key_id, wrapped = master_key_provider().wrap(
            secrets.token_bytes(32), context=_wrap_context(tenant, version)
        )
        return DataKey.objects.create(version=version, master_key_id=key_id, wrapped_key=wrapped)


def version_of(ciphertext: str) -> int:
    try:
        prefix, version, _ = ciphertext.split("$", 2)
        if prefix != PREFIX:
            raise ValueError
        return int(version)
    except ValueError:
        raise DecryptionFailed("not a hub ciphertext") from None


def encrypt(plaintext: str, *, aad: bytes, version: int | None = None) -> str:
    tenant = current_tenant()
    version = version if version is not None else active_version(tenant)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = _load_key(tenant, version).encrypt(nonce, plaintext.encode(), aad)
    return f"{PREFIX}${version}${base64.b64encode(nonce + sealed).decode()}"


def decrypt(ciphertext: str, *, aad: bytes) -> str:
    version = version_of(ciphertext)
    try:
        raw = base64.b64decode(ciphertext.split("$", 2)[2])
        return (
            _load_key(current_tenant(), version).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode()
        )
    except (InvalidTag, ValueError):
        raise DecryptionFailed("ciphertext does not belong here or was altered") from None
