"""Routing tests: ticketing connections of tenant A (offline: nothing here calls a vendor)."""

from __future__ import annotations

import pytest

from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from tests.fixtures.integrations import offline_connection


@pytest.fixture
def snow_a(tenant_a: Tenant) -> Connection:
    """Tenant A's ServiceNow connection."""
    return offline_connection(tenant_a, "servicenow", name="ServiceNow EU")


@pytest.fixture
def hubspot_a(tenant_a: Tenant) -> Connection:
    """Tenant A's HubSpot connection."""
    return offline_connection(tenant_a, "hubspot", name="HubSpot")


@pytest.fixture
def sf_a(tenant_a: Tenant) -> Connection:
    """Tenant A's Salesforce connection."""
    return offline_connection(tenant_a, "salesforce", name="Salesforce")
