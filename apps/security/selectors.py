"""Reads for the encryption layer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections, models

from apps.core.context import TenantRef
from apps.security.fields import EncryptedTextField


def encrypted_columns() -> list[tuple[type[models.Model], list[EncryptedTextField]]]:
    """Every model with encrypted fields, and those fields: what a data key rotation must rewrite."""
    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            found.append((model, fields))
    return found


def data_key_usage(*, tenant: TenantRef, versions: Iterable[int]) -> dict[str, int]:
    """Count the tenant's values still encrypted under any of `versions`, per model, in every database.

    Every database the hub knows, not only the tenant's home region: a copy left in another region (or an
    encrypted model in the control database) still needs its key. Only models with a non-zero count are
    returned, as "app_label.ModelName" -> count.
    """
    from apps.security.crypto import PREFIX

    patterns = [f"{PREFIX}${version}$%" for version in sorted(set(versions))]
    usage: Counter[str] = Counter()
    if not patterns:
        return {}
    for alias in settings.DATABASES:
        connection = connections[alias]
        tables = set(connection.introspection.table_names())
        for model, fields in encrypted_columns():
            meta = model._meta
            if meta.db_table not in tables:
                continue
            has_tenant = any(f.column == "tenant_id" for f in meta.concrete_fields)
            for field in fields:
                sql = f'SELECT count(*) FROM "{meta.db_table}" WHERE "{field.column}" LIKE ANY(%s)'  # noqa: S608
                params: list[Any] = [patterns]
                if has_tenant:  # without one (never so today) every row counts: refusing is the safe side
                    sql += " AND tenant_id = %s"
                    params.append(tenant.id)
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    count = cursor.fetchone()[0]
                if count:
                    usage[meta.label] += count
    return dict(sorted(usage.items()))
