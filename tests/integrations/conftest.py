"""The four vendor simulators, started in this process once per session, and connections pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from apps.integrations.models import Connection
from apps.integrations.services import connection_create
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


def demo_config(kind: str, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, credentials) that log in to the `kind` simulator described by `d`."""
    if kind == "salesforce":
        return (
            {"login_url": d["login_url"], "auth": "client_credentials", "client_id": d["client_id"]},
            {"client_secret": d["client_secret"]},
        )
    if kind == "hubspot":
        return {"base_url": d["base_url"], "auth": "private_app"}, {"access_token": d["private_app_token"]}
    if kind == "servicenow":
        return {"instance_url": d["instance_url"], "username": d["username"]}, {"password": d["password"]}
    return {"endpoint_url": d["endpoint_url"], "username": d["username"]}, {"password": d["password"]}


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
