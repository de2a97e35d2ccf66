"""Dynamics 365 through the hub: the sync engine stores the delta link and the deletions, an expired delta
reads everything again, a 429 penalizes the connection's bucket without opening its breaker, and the chat
actions serve order status from synced salesorders and file cases and leads through the outbox."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.chat.principal import ChannelInfo
from apps.chat.services import actions
from apps.chat.services.identity import Identity
from apps.core.context import tenant_context
from apps.integrations.models import Connection, StreamState, SyncedRecord
from apps.integrations.resilience import breaker_for, bucket_for
from apps.integrations.services.outbox import outbox_relay
from apps.integrations.services.sync import SyncFailed, sync_stream
from apps.tenants.models import Tenant
from connectors.dynamics.simulator import ORDER_STATUS, DynamicsSimulator
from tests.fixtures.auth import login_verified
from tests.fixtures.integrations import demo_connection
from tests.fixtures.simulators import SMALL, StartSimulator
from tests.identity.helpers import channel_identity, id_token

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def dyn(simulator: StartSimulator) -> DynamicsSimulator:
    return simulator(DynamicsSimulator, counts={**SMALL, "contacts": 120, "orders": 20, "leads": 3})


@pytest.fixture
def conn(tenant_a: Tenant, dyn: DynamicsSimulator) -> Connection:
    return demo_connection(tenant_a, "dynamics365", dyn.describe(), name="Dynamics 365", page_size=50)


def sync(tenant: Tenant, connection: Connection, stream: str = "contacts") -> Any:
    with tenant_context(tenant):
        return sync_stream(connection_id=connection.pk, stream=stream, trigger="manual")


def stored(tenant: Tenant, connection: Connection, stream: str = "contacts") -> dict[str, bool]:
    with tenant_context(tenant):
        rows = SyncedRecord.objects.filter(connection=connection, stream=stream)
        return dict(rows.values_list("external_id", "deleted"))


def cursor_token(tenant: Tenant, connection: Connection) -> str:
    with tenant_context(tenant):
        return str(StreamState.objects.get(connection=connection, stream="contacts").cursor.get("token"))


def test_engine_keeps_the_delta_link_and_stores_deletions(
    tenant_a: Tenant, tenant_b: Tenant, dyn: DynamicsSimulator, conn: Connection
) -> None:
    run = sync(tenant_a, conn)
    assert (run.status, run.read, run.created) == ("succeeded", 120, 120)
    first = cursor_token(tenant_a, conn)
    assert "$deltatoken=" in first
    changed = dyn.touch("contacts", count=2)
    gone = next(iter(dyn.tables["contacts"].rows))
    dyn.delete("contacts", gone)
    run = sync(tenant_a, conn)
    assert run.status == "succeeded" and run.read == len(set(changed) | {gone})
    store = stored(tenant_a, conn)
    assert len(store) == 120 and store[gone] is True and sum(store.values()) == 1
    assert cursor_token(tenant_a, conn) != first
    assert stored(tenant_b, conn) == {}  # the other tenant never sees tenant A's records


def test_expired_delta_token_resyncs_everything(
    tenant_a: Tenant, dyn: DynamicsSimulator, conn: Connection
) -> None:
    sync(tenant_a, conn)
    old = cursor_token(tenant_a, conn)
    dyn.expire_delta_tokens()
    run = sync(tenant_a, conn)
    assert (run.status, run.read, run.created, run.unchanged) == ("succeeded", 120, 0, 120)
    assert cursor_token(tenant_a, conn) not in (old, "None")


def test_service_protection_429_penalizes_the_bucket_not_the_breaker(
    tenant_a: Tenant, dyn: DynamicsSimulator, conn: Connection
) -> None:
    dyn.inject(rate_limit={"count": 5, "retry_after": 7, "policy": "execution_time"})
    with pytest.raises(SyncFailed) as info:
        sync(tenant_a, conn)
    assert info.value.retry_after == 7.0
    assert "service protection" in info.value.message
    bucket = bucket_for(conn)
    assert 5.0 < bucket.acquire() <= 7.5  # every worker waits for the vendor's Retry-After
    assert breaker_for(conn).state().state == "closed"


def channel() -> ChannelInfo:
    return ChannelInfo(
        id=uuid.uuid4(), kind="web", name="Web", default_locale="en", allowed_actions=("create_ticket",),
        knowledge_base_id=None, content_region="eu", ticket_connection_id=None, lead_connection_id=None,
    )  # fmt: skip


def test_order_status_from_synced_salesorders(
    tenant_a: Tenant, dyn: DynamicsSimulator, conn: Connection
) -> None:
    for stream in ("contacts", "orders"):
        assert sync(tenant_a, conn, stream).status == "succeeded"
    order = next(iter(dyn.tables["orders"].rows.values()))
    contact = dyn.tables["contacts"].rows[order.data["_customerid_value"]]
    number = order.data["ordernumber"]
    with tenant_context(tenant_a):
        found = actions.order_lookup(
            number=number, identity=Identity(user_id="u1", email=contact.data["emailaddress1"])
        )
        someone_else = actions.order_lookup(
            number=number, identity=Identity(user_id="u2", email="x@example.test")
        )
    assert found is not None and found.number == number
    assert found.status in {"New", "Pending", "In Progress", "Complete", "Invoiced"}
    assert found.currency in {"Euro", "US Dollar", "Japanese Yen", "Pound Sterling"}
    assert someone_else is None


def test_ticket_and_lead_actions_reach_dynamics(
    tenant_a: Tenant, dyn: DynamicsSimulator, conn: Connection
) -> None:
    conversation = uuid.uuid4()
    with tenant_context(tenant_a):
        ticket = actions.ticket_create(
            channel=channel(), conversation_id=conversation, subject="Broken widget", description="It broke.",
            locale="en",
        )  # fmt: skip
        lead = actions.lead_capture(
            channel=channel(), conversation_id=conversation, email="Ann@Example.test", note="Wants a demo"
        )
        assert (ticket.status, ticket.connector, lead.status, lead.connector) == (
            "queued", "dynamics365", "queued", "dynamics365")  # fmt: skip
        assert outbox_relay(connection_id=conn.pk) == 2
        assert outbox_relay(connection_id=conn.pk) == 0
    case = dyn.tables["tickets"].find("hub_externalid", ticket.reference)
    assert case is not None and case.data["title"] == "Broken widget" and case.data["prioritycode"] == 3
    assert case.data["ticketnumber"].startswith("CAS-")
    new_lead = dyn.tables["leads"].find("hub_externalid", lead.reference)
    assert new_lead is not None and new_lead.data["emailaddress1"] == "Ann@Example.test"
    assert new_lead.data["subject"] == "chat:web" and "not verified" in new_lead.data["description"]


def test_console_creates_a_connection_with_its_own_setup_help(
    connor_client: Any, connor: Any, tenant_a: Tenant, charlie: Any, dyn: DynamicsSimulator
) -> None:
    create = reverse("integrations:connection-create", kwargs={"tenant_slug": tenant_a.slug})
    assert 'value="dynamics365"' in connor_client.get(create).content.decode()
    page = connor_client.get(create, {"kind": "dynamics365"}).content.decode()
    assert "Setting up Microsoft Dynamics 365" in page and "/.default" in page
    assert "New Dynamics 365 connection" in page
    d = dyn.describe()
    data = {"kind": "dynamics365", "name": "D365", "endpoint_region": "eu", "org_url": d["org_url"],
            "authority_host": d["authority_host"], "tenant_id": d["tenant_id"], "client_id": d["client_id"],
            "client_secret": d["client_secret"], "page_size": 500, "change_tracking": "on",
            "contact_key": "emailaddress1", "key_column": "hub_externalid", "batch_size": 100}  # fmt: skip
    response = connor_client.post(create, data)
    assert response.status_code == 302, response.content.decode()[:1500]
    edit = connor_client.get(response["Location"]).content.decode()
    assert "Setting up Microsoft Dynamics 365" in edit and d["client_secret"] not in edit
    with tenant_context(tenant_a):
        connection = Connection.objects.get(name="D365")
    test_url = reverse(
        "integrations:connection-test", kwargs={"tenant_slug": tenant_a.slug, "pk": connection.pk}
    )
    assert "Connection test passed" in connor_client.post(test_url, HTTP_HX_REQUEST="true").content.decode()
    connor.language = "de"
    connor.save(update_fields=["language"])
    german = connor_client.get(create, {"kind": "dynamics365"}).content.decode()
    assert "Microsoft Dynamics 365 einrichten" in german and "Änderungen nachverfolgen" in german
    # Another tenant's member gets a 404 for this connection, not its settings.
    other = Client()
    login_verified(other, charlie)
    edit_url = reverse(
        "integrations:connection-edit", kwargs={"tenant_slug": tenant_a.slug, "pk": connection.pk}
    )
    assert other.get(edit_url).status_code == 404


def test_order_status_through_the_chat_api(
    api_client: Client, api_key_a: Any, tenant_a: Tenant, dyn: DynamicsSimulator, conn: Connection
) -> None:
    for stream in ("contacts", "orders"):
        assert sync(tenant_a, conn, stream).status == "succeeded"
    order = next(iter(dyn.tables["orders"].rows.values()))
    email = dyn.tables["contacts"].rows[order.data["_customerid_value"]].data["emailaddress1"]
    number = order.data["ordernumber"]
    channel = channel_identity(api_key_a.key.channel, mode="jwt")
    started = api_client.post(
        "/api/v1/conversations", {"identity_token": id_token(channel, sub="c1", email=email)},
        content_type="application/json", **api_key_a.headers,
    )  # fmt: skip
    assert started.status_code == 201, started.content
    reply = api_client.post(
        f"/api/v1/conversations/{started.json()['id']}/messages", {"text": f"Where is my order {number}?"},
        content_type="application/json", **api_key_a.headers,
    ).json()["reply"]  # fmt: skip
    state = ORDER_STATUS[order.data["statuscode"]]
    assert reply["actions"] == [{"type": "order_status", "status": "done", "order": number, "state": state}]
    assert state in reply["text"]
