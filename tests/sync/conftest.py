"""A fresh in-process Salesforce simulator per test (tests mutate it), and connections pointed at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.core.context import tenant_context
from apps.integrations.demo import demo_config
from apps.integrations.models import Connection, SyncedRecord
from apps.integrations.services.connections import connection_create
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator

CONTACTS = 1_000
SMALL = {"contacts": CONTACTS, "accounts": 10, "tickets": 10, "orders": 30, "articles": 5, "leads": 0}


@pytest.fixture(scope="session")
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sync-simulators")


@pytest.fixture
def sf(sim_state: Path, settings: Any) -> Iterator[SalesforceSimulator]:
    sim = SalesforceSimulator(state_dir=sim_state, counts=SMALL).start()
    settings.HUB_CONNECTOR_CA_BUNDLE = sim.ca_bundle
    yield sim
    sim.stop()


def sf_connection(
    tenant: Tenant, sim: SalesforceSimulator, *, name: str = "Salesforce", **settings_extra: Any
) -> Connection:
    config, credentials = demo_config("salesforce", sim.describe())
    secret = settings_extra.pop("client_secret", None)
    if secret is not None:
        credentials = {"client_secret": secret}
    return connection_create(
        tenant=tenant,
        kind="salesforce",
        name=name,
        endpoint_region=tenant.region_code,
        settings={**config, **settings_extra},
        credentials=credentials,
    )


def sim_rows(sim: SalesforceSimulator, stream: str = "contacts") -> dict[str, tuple[bool, str]]:
    """What the vendor holds: id -> (deleted, canonical raw JSON), read back through the connector."""
    from apps.integrations.services.sync import canonical_json

    records: dict[str, tuple[bool, str]] = {}
    from apps.integrations.conf import build_connector

    connection = Connection(kind="salesforce", settings=demo_config("salesforce", sim.describe())[0])
    connection.set_secrets(demo_config("salesforce", sim.describe())[1])
    for record in build_connector(connection).read(stream):
        records[record.external_id] = (record.deleted, canonical_json(record.raw))
    return records


def store_rows(
    tenant: Tenant, connection: Connection, stream: str = "contacts"
) -> dict[str, tuple[bool, str]]:
    """What the hub holds for one connection and stream, in the same shape as `sim_rows`."""
    from apps.integrations.services.sync import canonical_json

    with tenant_context(tenant):
        rows = SyncedRecord.objects.filter(connection=connection, stream=stream).values_list(
            "external_id", "deleted", "raw"
        )
        result = {ext: (deleted, canonical_json(raw)) for ext, deleted, raw in rows}
        assert len(result) == len(rows), "duplicate external ids in the store"
    return result


def content_digest(rows: dict[str, tuple[bool, str]]) -> str:
    """An order-independent digest of a whole data set."""
    import hashlib

    return hashlib.sha256(json.dumps(sorted(rows.items())).encode()).hexdigest()
