"""Ed25519 signing of audit exports, so an export can be checked offline with the public key."""

from __future__ import annotations

import base64
import os
import secrets
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _load_seed() -> bytes:
    if settings.HUB_AUDIT_SIGNING_KEY:
        raw = settings.HUB_AUDIT_SIGNING_KEY
    else:
        path = Path(settings.HUB_AUDIT_SIGNING_KEY_FILE)
        if not path.exists() and settings.HUB_ENV in {"dev", "test"}:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
            except FileExistsError:
                pass
        try:
            raw = path.read_text().strip()
        except FileNotFoundError:
            raise ImproperlyConfigured("Setting HUB_AUDIT_SIGNING_KEY: required in production") from None
    try:
        seed = base64.b64decode(raw, validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ImproperlyConfigured("Setting HUB_AUDIT_SIGNING_KEY: must be base64 of 32 random bytes")
    return seed


@lru_cache(maxsize=1)
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_load_seed())


def public_key_b64() -> str:
    return base64.b64encode(signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def trusted_public_keys() -> list[str]:
    """The current public key, then the earlier ones (HUB_AUDIT_PREVIOUS_PUBLIC_KEYS) anchors may carry."""
    return [public_key_b64(), *settings.HUB_AUDIT_PREVIOUS_PUBLIC_KEYS]


def sign(message: bytes) -> str:
    return base64.b64encode(signing_key().sign(message)).decode()


def verify(message: bytes, signature_b64: str, public_key_b64_value: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64_value))
        key.verify(base64.b64decode(signature_b64), message)
    except (InvalidSignature, ValueError):
        return False
    return True
