"""Shared helpers of the channel console/API tests: a platform account's values, URLs, audit, storage."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.chat.demo import platform_demo_config
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from connectors.whatsapp.simulator import WhatsAppSimulator


def wa_account(sim: WhatsAppSimulator) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, credentials) of a WhatsApp account on the simulator."""
    return platform_demo_config("whatsapp", sim.describe())


def console_url(name: str, tenant: Tenant, pk: Any = None) -> str:
    kwargs: dict[str, Any] = {"tenant_slug": tenant.slug}
    if pk is not None:
        kwargs["pk"] = pk
    return reverse(f"chat:{name}", kwargs=kwargs)


def audit_actions(tenant: Tenant) -> list[str]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def audit_changes(tenant: Tenant, action: str) -> list[dict[str, Any]]:
    with tenant_context(tenant):
        return list(
            AuditEvent.objects.filter(action=action).order_by("seq").values_list("changes", flat=True)
        )


def connection_of(tenant: Tenant, pk: Any) -> Connection | None:
    with tenant_context(tenant):
        return Connection.objects.filter(pk=pk).first()


def raw_credentials(connection: Connection) -> str:
    """The credentials column as stored (ciphertext), read in the current tenant's database."""
    from django.db import connections

    from apps.core.context import current_tenant

    with connections[current_tenant().db_alias].cursor() as cursor:
        table = Connection._meta.db_table
        cursor.execute(f"SELECT credentials FROM {table} WHERE id = %s", [connection.pk])  # noqa: S608
        row = cursor.fetchone()
    return str(row[0]) if row and row[0] else ""


def identity_secret(channel: Any) -> str | None:
    """The channel's identity secret as stored now (decrypted with its tenant's key)."""
    from apps.chat.models import Channel

    with tenant_context(channel.tenant):
        return Channel.objects.get(pk=channel.pk).identity_secret
