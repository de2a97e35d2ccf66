"""Master key providers (what wraps the per-tenant data keys), and the keys of user reference hashes.

The default provider reads AES-256 keys from HUB_MASTER_KEYS (production) or from a key file that
`services up` generates (development and tests). The first key is current; older keys stay listed until
`rotate_keys --master` has rewrapped every data key. A KMS or Vault provider implements the same interface.
The user reference keys (HUB_USER_REF_KEYS, same format and the same development key file scheme) key the
hashes that find a person's conversations again for erasure, independently of SECRET_KEY.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

NONCE_BYTES = 12


class KeyUnavailable(Exception):
    """The master key a data key was wrapped with is not configured (or the wrapped key was altered)."""


class MasterKeyProvider(Protocol):
    current_key_id: str

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        """Encrypt a data key under the current master key; return (master key id, wrapped bytes)."""
        ...

    def unwrap(self, wrapped: bytes, *, key_id: str, context: bytes) -> bytes:
        """Decrypt a data key wrapped under master key `key_id`; raise KeyUnavailable when impossible."""
        ...


def parse_keys(raw: str, source: str) -> list[tuple[str, bytes]]:
    """Parse "id:base64key,id2:base64key" (first is current); every key must be 32 bytes."""
    keys = []
    for item in [part.strip() for part in raw.split(",") if part.strip()]:
        key_id, sep, encoded = item.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (ValueError, TypeError):
            key = b""
        if not sep or not key_id or len(key) != 32:
            raise ImproperlyConfigured(f"{source}: each entry must be <id>:<base64 of 32 random bytes>")
        keys.append((key_id, key))
    if not keys:
        raise ImproperlyConfigured(f"{source}: no key configured")
    if len({k for k, _ in keys}) != len(keys):
        raise ImproperlyConfigured(f"{source}: a key id is listed twice")
    return keys


def generate_key_file(path: Path) -> None:
    """Create a key file with one fresh master key, readable by the owner only (development)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"id": "local-1", "key": base64.b64encode(secrets.token_bytes(32)).decode()}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return
    with os.fdopen(fd, "w") as fh:
        json.dump({"keys": [entry]}, fh)


def read_key_file(path: Path, *, what: str = "Master key", variable: str = "HUB_MASTER_KEYS") -> str:
    try:
        data = json.loads(path.read_text())
        return ",".join(f"{entry['id']}:{entry['key']}" for entry in data["keys"])
    except FileNotFoundError:
        raise ImproperlyConfigured(
            f"{what} file {path} is missing: run `python manage.py services up` (development) or set "
            f"{variable} (production)"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise ImproperlyConfigured(f"{what} file {path} is malformed") from None


class LocalMasterKeyProvider:
    """AES-256-GCM key wrapping with locally configured master keys."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self.current_key_id = keys[0][0]

    @classmethod
    def from_settings(cls) -> LocalMasterKeyProvider:
        if settings.HUB_MASTER_KEYS:
            return cls(parse_keys(settings.HUB_MASTER_KEYS, "HUB_MASTER_KEYS"))
        path = Path(settings.HUB_MASTER_KEY_FILE)
        if settings.HUB_ENV in {"dev", "test"}:
            generate_key_file(path)  # development convenience; production must configure its keys
        return cls(parse_keys(read_key_file(path), str(path)))

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return self.current_key_id, nonce + self._keys[self.current_key_id].encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, *, key_id: str, context: bytes) -> bytes:
        aead = self._keys.get(key_id)
        if aead is None:
            raise KeyUnavailable(f"master key {key_id!r} is not configured")
        try:
            return aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except Exception:
            raise KeyUnavailable("a data key failed to unwrap (wrong master key or altered)") from None


@lru_cache(maxsize=1)
def master_key_provider() -> MasterKeyProvider:
    """The configured provider, built once per process from immutable settings."""
    provider_class = import_string(settings.HUB_MASTER_KEY_PROVIDER)
    provider: MasterKeyProvider = provider_class.from_settings()
    return provider


@lru_cache(maxsize=1)
def user_ref_keys() -> tuple[bytes, ...]:
    """The keys of user reference hashes, current first, built once per process from immutable settings.

    HUB_USER_REF_KEYS in production (required there); in development and tests a key file under HUB_HOME,
    created on first use like the master key file.
    """
    if settings.HUB_USER_REF_KEYS:
        entries = parse_keys(settings.HUB_USER_REF_KEYS, "HUB_USER_REF_KEYS")
    else:
        path = Path(settings.HUB_USER_REF_KEY_FILE)
        if settings.HUB_ENV in {"dev", "test"}:
            generate_key_file(path)
        raw = read_key_file(path, what="User reference key", variable="HUB_USER_REF_KEYS")
        entries = parse_keys(raw, str(path))
    return tuple(key for _key_id, key in entries)
