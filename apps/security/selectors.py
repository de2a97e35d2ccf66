"""Reads for the encryption layer."""

from __future__ import annotations

from django.apps import apps
from django.db import models

from apps.security.fields import EncryptedTextField


def encrypted_columns() -> list[tuple[type[models.Model], list[EncryptedTextField]]]:
    """Every model with encrypted fields, and those fields: what a data key rotation must rewrite."""
    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            found.append((model, fields))
    return found
