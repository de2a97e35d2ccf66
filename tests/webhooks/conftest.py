"""Connections of tenant A for each webhook vendor (no vendor is called: a webhook only queues a sync)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_create
from apps.integrations.services.webhooks import connection_webhook_org_set, connection_webhook_secret_rotate
from apps.tenants.models import Tenant

HUBSPOT_SECRET = "hubspot-app-client-secret"
ORG_ID = "00D5g000004XyZaEAK"


def make_connection(tenant: Tenant, kind: str, *, name: str = "") -> Connection:
    settings: dict[str, Any]
    if kind == "hubspot":
        settings = {"base_url": "https://api.hubapi.example", "auth": "private_app"}
        credentials = {"access_token": "pat-token", "client_secret": HUBSPOT_SECRET}
    elif kind == "salesforce":
        settings = {"login_url": "https://acme.my.salesforce.example", "client_id": "consumer-key"}
        credentials = {"client_secret": "consumer-secret"}
    else:
        settings = {"instance_url": "https://acme.service-now.example", "username": "hub"}
        credentials = {"password": "sn-password"}
    return connection_create(
        tenant=tenant,
        kind=kind,
        name=name or kind,
        endpoint_region=tenant.region_code,
        settings=settings,
        credentials=credentials,
    )


@pytest.fixture
def hubspot(tenant_a: Tenant) -> Connection:
    return make_connection(tenant_a, "hubspot")


@pytest.fixture
def salesforce(tenant_a: Tenant) -> tuple[Connection, str]:
    """A Salesforce connection with its org id set and a fresh shared secret (the URL token)."""
    connection = make_connection(tenant_a, "salesforce")
    with tenant_context(tenant_a):
        token = connection_webhook_secret_rotate(connection=connection, actor=None)
        connection_webhook_org_set(connection=connection, org_id=ORG_ID, actor=None)
    return connection, token


@pytest.fixture
def servicenow(tenant_a: Tenant) -> tuple[Connection, str]:
    connection = make_connection(tenant_a, "servicenow")
    with tenant_context(tenant_a):
        secret = connection_webhook_secret_rotate(connection=connection, actor=None)
    return connection, secret
