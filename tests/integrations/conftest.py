"""The four vendor simulators, started in this process once per session, and connections pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.integrations.demo import demo_config
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_create
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from connectors import simulators
from tests.factories import UserFactory

SMALL = {"contacts": 50, "accounts": 30, "tickets": 30, "orders": 30, "articles": 20, "leads": 0}
KINDS = ("salesforce", "hubspot", "servicenow", "sap")


@pytest.fixture(scope="session")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """Descriptions (base URL, demo credentials, CA bundle) of the running simulators, by vendor."""
    state = tmp_path_factory.mktemp("simulators")
    described = simulators.start_all(state, counts=SMALL)
    yield described
    simulators.stop_all(state)


@pytest.fixture(autouse=True)
def _trust_simulators(settings: Any, sims: dict[str, dict[str, Any]]) -> None:
    """Verify the simulators' TLS with their own CA (loopback is allow-listed outside production)."""
    settings.HUB_CONNECTOR_CA_BUNDLE = sims["salesforce"]["ca_bundle"]


def secret_of(kind: str, credentials: dict[str, str]) -> tuple[str, str]:
    """The one credential field a wrong-password test replaces, and its correct value."""
    name = next(iter(credentials))
    return name, credentials[name]


def make_connection(
    tenant: Tenant, sims: dict[str, dict[str, Any]], kind: str, *, name: str | None = None, **extra: Any
) -> Connection:
    settings, credentials = demo_config(kind, sims[kind])
    return connection_create(
        tenant=tenant,
        kind=kind,
        name=name or f"{kind} demo",
        endpoint_region=tenant.region_code,
        settings=settings,
        credentials=credentials,
        **extra,
    )


@pytest.fixture
def connor(tenant_a: Tenant, alice: Any) -> Any:
    """Connector manager of tenant A."""
    user = UserFactory.create(username="connor")
    membership_add(tenant=tenant_a, user=user, role=Role.CONNECTOR_MANAGER)
    return user
