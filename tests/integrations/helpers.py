"""Connections of the integrations tests, to the four simulators of tests/integrations/conftest.py."""

from __future__ import annotations

from typing import Any

from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from tests.fixtures.integrations import demo_connection

KINDS = ("salesforce", "hubspot", "servicenow", "sap", "sap_odata", "dynamics365")


def secret_of(kind: str, credentials: dict[str, str]) -> tuple[str, str]:
    """The one credential field a wrong-password test replaces, and its correct value."""
    name = next(iter(credentials))
    return name, credentials[name]


def make_connection(
    tenant: Tenant,
    sims: dict[str, dict[str, Any]],
    kind: str,
    *,
    name: str | None = None,
    field_map: dict[str, Any] | None = None,
) -> Connection:
    """A connection of `kind` to its simulator (name: "<kind> demo" unless given)."""
    return demo_connection(tenant, kind, sims[kind], name=name or f"{kind} demo", field_map=field_map)
