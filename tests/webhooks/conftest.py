"""Connections of tenant A for each webhook vendor (no vendor is called: a webhook only queues a sync)."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.services.webhooks import connection_webhook_org_set, connection_webhook_secret_rotate
from apps.tenants.models import Tenant
from tests.fixtures.integrations import ORG_ID, offline_connection


@pytest.fixture
def client() -> Client:
    """Vendors have no session and no CSRF token: the endpoints must not need either."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def hubspot(tenant_a: Tenant) -> Connection:
    return offline_connection(tenant_a, "hubspot")


@pytest.fixture
def salesforce(tenant_a: Tenant) -> tuple[Connection, str]:
    """A Salesforce connection with its org id set and a fresh shared secret (the URL token)."""
    connection = offline_connection(tenant_a, "salesforce")
    with tenant_context(tenant_a):
        token = connection_webhook_secret_rotate(connection=connection, actor=None)
        connection_webhook_org_set(connection=connection, org_id=ORG_ID, actor=None)
    return connection, token


@pytest.fixture
def servicenow(tenant_a: Tenant) -> tuple[Connection, str]:
    connection = offline_connection(tenant_a, "servicenow")
    with tenant_context(tenant_a):
        secret = connection_webhook_secret_rotate(connection=connection, actor=None)
    return connection, secret
