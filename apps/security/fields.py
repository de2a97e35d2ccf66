"""An encrypted model field: the column holds ciphertext, the attribute plaintext.

Decryption happens on first attribute access and needs the row's tenant and primary key (they are part of
the associated data), so the field is only for region models with a UUID key (RegionObjectModel), whose key
is known before the first save. Values are never searchable and never serialized in the clear.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models


class Ciphertext(str):
    """A value read from the database: already encrypted."""


def associated_data(instance: models.Model, field_name: str) -> bytes:
    meta = instance._meta
    return f"{instance.tenant_id}|{meta.app_label}.{meta.model_name}|{field_name}|{instance.pk}".encode()  # type: ignore[attr-defined]


class ProtectedAttribute:
    """The model attribute of a protected field: plaintext in, plaintext out, stored form in the column.

    Reading opens the stored value once per instance (`open`); assigning plaintext clears the stored form,
    which the field's `pre_save` protects again; assigning a value of `stored_type` (read from the database)
    or None keeps it as is.
    """

    stored_type: type = str

    def __init__(self, field: models.Field) -> None:
        self.field = field
        self.plain_key = f"_{field.attname}_plain"

    def open(self, instance: models.Model, stored: Any) -> Any:
        raise NotImplementedError

    def plain(self, value: Any) -> Any:
        return value

    def __get__(self, instance: models.Model | None, owner: type) -> Any:
        if instance is None:
            return self
        data = instance.__dict__
        if self.plain_key in data:
            return data[self.plain_key]
        stored = data.get(self.field.attname)
        if stored is None:
            return None
        plain = self.open(instance, stored)
        data[self.plain_key] = plain
        return plain

    def __set__(self, instance: models.Model, value: Any) -> None:
        data = instance.__dict__
        if isinstance(value, self.stored_type) or value is None:
            data[self.field.attname] = value
            data.pop(self.plain_key, None)
        else:
            data[self.plain_key] = self.plain(value)
            data[self.field.attname] = None  # protected again on save


class _EncryptedAttribute(ProtectedAttribute):
    stored_type = Ciphertext

    def open(self, instance: models.Model, stored: Any) -> Any:
        from apps.security.crypto import decrypt

        return decrypt(stored, aad=associated_data(instance, self.field.name))

    def plain(self, value: Any) -> Any:
        return str(value)


class EncryptedTextField(models.TextField):
    """Text encrypted with the tenant's data key (AES-256-GCM, bound to tenant, model, field and row)."""

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        if not cls._meta.abstract and not isinstance(cls._meta.pk, models.UUIDField | type(None)):
            raise ImproperlyConfigured(f"{cls.__name__}.{name}: encrypted fields need a UUID primary key")
        setattr(cls, self.attname, _EncryptedAttribute(self))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Ciphertext | None:
        return None if value is None else Ciphertext(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        data = model_instance.__dict__
        plain_key = f"_{self.attname}_plain"
        if data.get(self.attname) is None and data.get(plain_key) is not None:
            from apps.security.crypto import encrypt

            data[self.attname] = Ciphertext(
                encrypt(data[plain_key], aad=associated_data(model_instance, self.name))
            )
        return data.get(self.attname)

    def value_from_object(self, obj: models.Model) -> Any:
        """Serializers and dumps see the ciphertext, never the plaintext."""
        return obj.__dict__.get(self.attname)

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name not in {"isnull"}:
            return None  # encrypted values cannot be searched
        return super().get_lookup(lookup_name)
