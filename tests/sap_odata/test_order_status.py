"""SAP sales orders serve the chat's order status: synced from the OData simulator through the sync engine,
found by number and matched to the verified user through SoldToParty → the business partner's e-mail."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.chat.services.actions import order_lookup
from apps.chat.services.identity import Identity
from apps.core.context import tenant_context
from apps.integrations.models import Connection, RunStatus, SyncedRecord
from apps.integrations.services.sync import sync_stream
from apps.tenants.models import Tenant
from connectors.sap_odata.simulator import SapODataSimulator
from tests.fixtures.chat import IssuedKey
from tests.fixtures.integrations import demo_connection
from tests.fixtures.simulators import StartSimulator
from tests.identity.helpers import channel_identity, id_token

pytestmark = pytest.mark.django_db(databases="__all__")
JSON = "application/json"
STATUS_TEXT = {"A": "Open", "B": "In process", "C": "Completed"}


@pytest.fixture
def synced(tenant_a: Tenant, simulator: StartSimulator) -> tuple[SapODataSimulator, Connection]:
    sim = simulator(SapODataSimulator, counts={"contacts": 40, "orders": 140, "accounts": 0})
    connection = demo_connection(tenant_a, "sap_odata", sim.describe(), name="S/4HANA", page_size=50)
    with tenant_context(tenant_a):
        for stream in ("contacts", "orders"):
            run = sync_stream(connection_id=connection.pk, stream=stream, trigger="manual")
            assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    return sim, connection


def customer_email(sim: SapODataSimulator, number: str) -> str:
    sold_to = sim.tables["orders"].rows[number].data["SoldToParty"]
    return str(sim.tables["contacts"].rows[sold_to].data["EmailAddress"])


def other_customers_order(sim: SapODataSimulator, email: str) -> str:
    return next(n for n in sim.tables["orders"].rows if int(n) >= 100 and customer_email(sim, n) != email)


def expected_status(sim: SapODataSimulator, number: str) -> str:
    data = sim.tables["orders"].rows[number].data
    return (
        "Rejected"
        if data["OverallSDDocumentRejectionSts"] == "C"
        else STATUS_TEXT[data["OverallSDProcessStatus"]]
    )


def test_synced_sales_orders_are_stored_with_number_status_and_customer(
    tenant_a: Tenant, synced: tuple[SapODataSimulator, Connection]
) -> None:
    sim, connection = synced
    with tenant_context(tenant_a):
        stored = SyncedRecord.objects.get(connection=connection, stream="orders", external_id="117")
        assert SyncedRecord.objects.filter(connection=connection, stream="orders").count() == sim.count(
            "orders"
        )
        contacts = SyncedRecord.objects.filter(connection=connection, stream="contacts").count()
    assert contacts == sim.count("contacts")
    assert (stored.number, stored.status) == ("117", expected_status(sim, "117"))
    assert stored.fields["customer_id"] == sim.tables["orders"].rows["117"].data["SoldToParty"]
    assert stored.raw["to_Item"]["results"]


def test_order_lookup_matches_the_sold_to_partys_email(
    tenant_a: Tenant, synced: tuple[SapODataSimulator, Connection]
) -> None:
    sim, _connection = synced
    email = customer_email(sim, "117")
    with tenant_context(tenant_a):
        found = order_lookup(number="117", identity=Identity(user_id="c117", email=email.casefold()))
        other = other_customers_order(sim, email)
        refused = order_lookup(number=other, identity=Identity(user_id="c117", email=email.casefold()))
    assert found is not None
    assert (found.number, found.status) == ("117", expected_status(sim, "117"))
    assert found.amount == sim.tables["orders"].rows["117"].data["TotalNetAmount"]
    assert refused is None


def test_order_status_through_the_chat_api(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, synced: tuple[SapODataSimulator, Connection]
) -> None:
    sim, _connection = synced
    email = customer_email(sim, "117")
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    token = id_token(channel, sub="customer-117", email=email)
    started = api_client.post(
        "/api/v1/conversations", {"identity_token": token}, content_type=JSON, **api_key_a.headers
    )
    assert started.status_code == 201, started.content
    conversation = started.json()["id"]

    def ask(text: str) -> dict[str, Any]:
        response = api_client.post(
            f"/api/v1/conversations/{conversation}/messages", {"text": text}, content_type=JSON,
            **api_key_a.headers,
        )  # fmt: skip
        assert response.status_code == 200, response.content
        return dict(response.json()["reply"])

    own = ask("Where is my order 117?")
    state = expected_status(sim, "117")
    assert own["actions"] == [{"type": "order_status", "status": "done", "order": "117", "state": state}]
    assert state in own["text"]
    number = other_customers_order(sim, email)
    other = ask(f"Where is my order {number}?")
    assert other["actions"] == []  # another customer's order reads as a missing one
    assert expected_status(sim, number) not in other["text"]
