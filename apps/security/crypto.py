"""Envelope encryption: per-tenant AES-256-GCM data keys, wrapped by the master key provider.

Ciphertext format: ``hub1$<data key version>$<base64(nonce || ciphertext+tag)>``. The associated data binds
each ciphertext to tenant, model, field and row, so a value copied elsewhere does not decrypt.
Unwrapped keys are cached per (region, tenant, version) in a bounded LRU whose entries expire: a version's key
material never changes, but a retired version can be destroyed (`rotate_keys --destroy-retired`), perhaps by
another process. The process that destroys evicts at once; any other stops using the material at most
HUB_DATA_KEY_CACHE_TTL seconds later, after which the destroyed row makes decryption fail clearly.

Which version is *active* is kept in the shared cache (Redis), not in the process, for ACTIVE_VERSION_TTL
seconds: every encrypted write needs it, and a database look-up per write cost three queries per chat turn.
A new version (`create_data_key`) overwrites the entry once it commits, so every process encrypts under it
from its next write; readers only *add* an entry, so one that read the database just before the rotation
committed cannot put the old version back. When that overwrite is lost (Redis down), writes may use the
previous version for at most ACTIVE_VERSION_TTL seconds. That is safe: a retired version stays readable, and
`rotate_keys --destroy-retired` refuses while any row still uses it (run `rotate_keys` again). A cached
version whose row is gone or destroyed is dropped and the database asked again.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cachetools import TTLCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from redis.exceptions import RedisError

from apps.core.context import TenantRef, current_tenant
from apps.security.keys import NONCE_BYTES, master_key_provider

if TYPE_CHECKING:
    from apps.security.models import DataKey

PREFIX = "hub1"

CacheKey = tuple[str, int, int]  # (region, tenant id, data key version)
#: Seconds a tenant's active version stays in the shared cache when no rotation overwrites it.
ACTIVE_VERSION_TTL = 300


class DecryptionFailed(Exception):
    """A ciphertext did not decrypt: wrong tenant/row/field, altered, or its key is unavailable."""


class KeyCache:
    """This process's unwrapped data keys: at most HUB_DATA_KEY_CACHE_SIZE, each HUB_DATA_KEY_CACHE_TTL s.

    cachetools' TTLCache evicts the least recently used entry when full and drops expired ones; it is not
    thread-safe, hence the lock. The store is built on first use, so clear() also re-reads the settings.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store: TTLCache[CacheKey, AESGCM] | None = None

    def _entries(self) -> TTLCache[CacheKey, AESGCM]:
        if self._store is None:
            self._store = TTLCache(
                maxsize=settings.HUB_DATA_KEY_CACHE_SIZE, ttl=settings.HUB_DATA_KEY_CACHE_TTL
            )
        return self._store

    def get(self, key: CacheKey) -> AESGCM | None:
        with self._lock:
            return self._entries().get(key)

    def put(self, key: CacheKey, aead: AESGCM) -> None:
        with self._lock:
            self._entries()[key] = aead

    def evict(self, keys: Iterable[CacheKey]) -> None:
        with self._lock:
            for key in keys:
                self._entries().pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._store = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries())

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries()


_key_cache = KeyCache()


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
        if row.status == DataKey.Status.DESTROYED or row.wrapped_key is None:
            raise DecryptionFailed(f"data key version {version} was destroyed: values under it are lost")
        material = master_key_provider().unwrap(
            bytes(row.wrapped_key), key_id=row.master_key_id, context=_wrap_context(tenant, version)
        )
        aead = AESGCM(material)
        _key_cache.put(cache_key, aead)
    return aead


def forget_keys(tenant: TenantRef, versions: Iterable[int]) -> None:
    """Drop versions from this process's cache (they were destroyed: no stale material may decrypt)."""
    _key_cache.evict((tenant.region, tenant.id, version) for version in versions)


def _active_key(tenant: TenantRef) -> str:
    return f"security:active-data-key:{tenant.region}:{tenant.id}"


def _cached_active(tenant: TenantRef) -> int | None:
    try:
        version = cache.get(_active_key(tenant))
    except (RedisError, OSError):  # the database answers instead
        return None
    return version if isinstance(version, int) else None


def _cache_active(tenant: TenantRef, version: int, *, overwrite: bool) -> None:
    with contextlib.suppress(RedisError, OSError):  # a lost write is bounded by the TTL (module docstring)
        if overwrite:
            cache.set(_active_key(tenant), version, ACTIVE_VERSION_TTL)
        else:
            cache.add(_active_key(tenant), version, ACTIVE_VERSION_TTL)


def _forget_active(tenant: TenantRef) -> None:
    with contextlib.suppress(RedisError, OSError):
        cache.delete(_active_key(tenant))


def active_version(tenant: TenantRef | None = None) -> int:
    """Return the tenant's active data key version (shared cache, else database), creating version 1 on
    first use."""
    tenant = tenant or current_tenant()
    version = _cached_active(tenant)
    if version is not None:
        return version
    return _active_version_db(tenant)


def _active_version_db(tenant: TenantRef) -> int:
    from apps.security.models import DataKey

    version = DataKey.objects.filter(status=DataKey.Status.ACTIVE).values_list("version", flat=True).first()
    if version is not None:
        _cache_active(tenant, version, overwrite=False)
        return version
    try:
        return create_data_key(tenant).version
    except IntegrityError:  # another process created it concurrently
        return _active_version_db(tenant)


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
        created = DataKey.objects.create(version=version, master_key_id=key_id, wrapped_key=wrapped)
        # Every process encrypts under the new version from its next write (see the module docstring); the
        # entry goes now, for this transaction's own later writes, and the new version is set on commit.
        _forget_active(tenant)
        transaction.on_commit(lambda: _cache_active(tenant, version, overwrite=True), using=tenant.db_alias)
        return created


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
    if version is not None:
        aead = _load_key(tenant, version)
    else:
        version = active_version(tenant)
        try:
            aead = _load_key(tenant, version)
        except DecryptionFailed:  # a cached version whose row is gone or destroyed: ask the database
            _forget_active(tenant)
            version = _active_version_db(tenant)
            aead = _load_key(tenant, version)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = aead.encrypt(nonce, plaintext.encode(), aad)
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
