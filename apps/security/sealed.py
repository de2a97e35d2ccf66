"""Platform secrets sealed directly under the master key, for the control database.

Tenant data is encrypted with the tenant's data key (crypto.py), which lives in the tenant's region. Secrets
of the control database (a user's TOTP seed, the key that hashes a user's backup codes) belong to no tenant,
so they are key material of their own, wrapped by the master key provider exactly like a data key: with the
local provider the master key, with a KMS provider the KMS (one unwrap per use, which suits secrets read once
per sign-in).

Format: ``seal1$<master key id>$<base64(wrapped)>``. The wrap context names the purpose and the owner row
(``hub-sealed|accounts.totpdevice.seed|user_id=7``), so a value copied to another user's row, or used as a
data key, does not unwrap. The master key id says which values `seal_is_current` must re-seal after a
master key rotation, before the old master key is removed.
"""

from __future__ import annotations

import base64
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from apps.security.fields import ProtectedAttribute
from apps.security.keys import KeyUnavailable, master_key_provider

PREFIX = "seal1"


class UnsealFailed(Exception):
    """A sealed value did not open: wrong owner or purpose, altered, or its master key is not configured."""


def _context(purpose: str) -> bytes:
    return f"hub-sealed|{purpose}".encode()


def seal(secret: bytes, *, purpose: str) -> str:
    """Wrap `secret` under the current master key, bound to `purpose` (which names the owner row too)."""
    key_id, wrapped = master_key_provider().wrap(secret, context=_context(purpose))
    return f"{PREFIX}${key_id}${base64.b64encode(wrapped).decode()}"


def unseal(sealed: str, *, purpose: str) -> bytes:
    """Return the secret `seal` wrapped for the same purpose; raise UnsealFailed otherwise."""
    prefix, _sep, rest = sealed.partition("$")
    key_id, _sep, encoded = rest.partition("$")
    if prefix != PREFIX or not key_id or not encoded:
        raise UnsealFailed("not a sealed value")
    try:
        wrapped = base64.b64decode(encoded, validate=True)
        return master_key_provider().unwrap(wrapped, key_id=key_id, context=_context(purpose))
    except (ValueError, KeyUnavailable):
        raise UnsealFailed("the sealed value does not belong here, was altered, or its key is gone") from None


def seal_is_current(sealed: str) -> bool:
    """Tell whether `sealed` is wrapped under the current master key (re-seal before removing old keys)."""
    return sealed.startswith(f"{PREFIX}${master_key_provider().current_key_id}$")


class Sealed(str):
    """A value read from the database: already sealed."""


class _SealedAttribute(ProtectedAttribute):
    stored_type = Sealed
    field: SealedSecretField

    def open(self, instance: models.Model, stored: Any) -> Any:
        return unseal(stored, purpose=self.field.purpose_of(instance))

    def plain(self, value: Any) -> Any:
        return bytes(value)


class SealedSecretField(models.TextField):
    """Secret bytes of a control-database row, stored sealed under the master key; the attribute is bytes.

    `bind_to` names the field (e.g. ``user_id``) whose value, with the model and field names, is bound into
    the seal. Never searchable; serializers and dumps see the sealed text only.
    """

    _pyi_private_set_type: bytes | Sealed | None  # type: ignore[assignment]  # django-stubs: bytes, not str
    _pyi_private_get_type: bytes  # type: ignore[assignment]

    def __init__(self, *args: Any, bind_to: str, **kwargs: Any) -> None:
        self.bind_to = bind_to
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["bind_to"] = self.bind_to
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        setattr(cls, self.attname, _SealedAttribute(self))

    def purpose_of(self, instance: models.Model) -> str:
        owner = getattr(instance, self.bind_to, None)
        if owner is None:
            raise ImproperlyConfigured(
                f"{type(instance).__name__}.{self.name}: {self.bind_to} must be set first"
            )
        meta = instance._meta
        return f"{meta.app_label}.{meta.model_name}.{self.name}|{self.bind_to}={owner}"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Sealed | None:
        return None if value is None else Sealed(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        data = model_instance.__dict__
        plain_key = f"_{self.attname}_plain"
        if data.get(self.attname) is None and data.get(plain_key) is not None:
            data[self.attname] = Sealed(seal(data[plain_key], purpose=self.purpose_of(model_instance)))
        return data.get(self.attname)

    def value_from_object(self, obj: models.Model) -> Any:
        """Serializers and dumps see the sealed text, never the secret."""
        return obj.__dict__.get(self.attname)

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name not in {"isnull", "startswith"}:
            return None  # sealed values cannot be searched (startswith finds values under one master key)
        return super().get_lookup(lookup_name)
