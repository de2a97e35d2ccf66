"""Erasure (GDPR art. 17) that tells the vendors: one outbox message per connection, delivered to the
simulators as each vendor's own mechanism; the request completes only when every vendor is done."""

from __future__ import annotations

from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import PublicGdprDeleteInput
from hubspot.crm.contacts.exceptions import NotFoundException

from apps.audit.models import AuditEvent
from apps.core.context import as_ref, tenant_context
from apps.core.errors import ValidationFailed
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus, SyncedRecord
from apps.integrations.services.outbox import outbox_relay
from apps.policies.dsr import dsr_create, dsr_notification_handle, dsr_start
from apps.policies.models import DataSubjectRequest, RequestStatus
from apps.tenants.models import Tenant
from connectors.erasure import ERASURE_STREAM
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.sap.simulator import SapSimulator
from connectors.whatsapp.simulator import WhatsAppSimulator
from tests.channels.platforms import platform_connection
from tests.dsr.helpers import EMAIL, Vendors, synced
from tests.fixtures.integrations import demo_connection, offline_connection
from tests.fixtures.metrics import scrape
from tests.fixtures.outbox import make_due
from tests.fixtures.simulators import TINY, StartSimulator

pytestmark = pytest.mark.django_db


def erase(tenant: Tenant, actor: Any, **identifiers: Any) -> DataSubjectRequest:
    dsr = dsr_create(tenant=tenant, kind="erasure", actor=actor, **identifiers)
    return dsr_start(tenant=tenant, dsr=dsr, actor=actor)


def dsr_count(event: str) -> float:
    samples = scrape().get("hub_dsr_events_total", [])
    return sum(s.value for s in samples if s.labels == {"kind": "erasure", "action": event})


def relay_all(tenant: Tenant, vendors: Vendors, capture: Any) -> None:
    """Run each connection's relay as the worker would; its commit hooks (the settled signal) run too."""
    with tenant_context(tenant), capture(using=as_ref(tenant).db_alias, execute=True):
        for connection in vendors.connections.values():
            outbox_relay(connection_id=connection.pk)


def current(tenant: Tenant, dsr: DataSubjectRequest) -> DataSubjectRequest:
    with tenant_context(tenant):
        return DataSubjectRequest.objects.get(pk=dsr.pk)


def test_official_hubspot_client_gdpr_deletes_on_the_simulator(simulator: StartSimulator) -> None:
    hs = simulator(HubSpotSimulator, counts=TINY)
    row = next(iter(hs.by_type["contacts"].rows.values()))
    client = HubSpot(access_token=hs.private_app_token, host=hs.base_url)
    email = str(row.data["email"])
    client.crm.contacts.basic_api.purge(PublicGdprDeleteInput(object_id=email, id_property="email"))
    assert hs.gdpr_deletes == [{"objectId": email, "idProperty": "email"}]
    with pytest.raises(NotFoundException):
        client.crm.contacts.basic_api.get_by_id(row.id)
    with pytest.raises(NotFoundException):  # gone: a second delete is a 404
        client.crm.contacts.basic_api.purge(PublicGdprDeleteInput(object_id=row.id))


def test_erasure_reaches_every_vendor_and_completes(
    tenant_a: Tenant, alice: Any, vendors: Vendors, django_capture_on_commit_callbacks: Any
) -> None:
    dsr = erase(tenant_a, alice, email=EMAIL)
    assert dsr.status == RequestStatus.IN_PROGRESS  # the vendors have not answered yet
    notices = dsr.evidence["notifications"]
    assert sorted(n["kind"] for n in notices) == ["hubspot", "salesforce", "servicenow"]
    assert {n["state"] for n in notices} == {"pending"}
    assert dsr.evidence["erasure"]["counts"]["synced_records"] == 3  # the hub's own copies went first
    with tenant_context(tenant_a):
        assert not SyncedRecord.objects.filter(email=EMAIL).exists()
        messages = {m.connection.kind: m for m in OutboxMessage.objects.filter(stream=ERASURE_STREAM)}
    # ServiceNow learns no e-mail address: only the record ids it already holds.
    assert "lookup_email" not in messages["servicenow"].payload
    assert messages["hubspot"].payload["lookup_email"] == EMAIL

    relay_all(tenant_a, vendors, django_capture_on_commit_callbacks)

    # HubSpot: its GDPR delete, by the synced contact id (the e-mail then finds nothing more).
    assert vendors.hubspot.gdpr_deletes == [{"objectId": vendors.hubspot_contact, "idProperty": None}]
    assert vendors.hubspot_contact not in vendors.hubspot.by_type["contacts"].rows
    # Salesforce: the contact is deleted (simple-salesforce's DELETE on the sObject).
    assert vendors.salesforce.tables["contacts"].rows[vendors.salesforce_contact].deleted
    with tenant_context(tenant_a):
        sf_message = OutboxMessage.objects.get(
            stream=ERASURE_STREAM, connection=vendors.connections["salesforce"]
        )
    assert sf_message.vendor_id == vendors.salesforce_contact  # what was deleted, as the vendor's ids
    # ServiceNow: a task for the instance's admin, naming the request and the record, not the person.
    tasks = [
        r.data
        for r in vendors.servicenow.tables["tickets"].rows.values()
        if str(r.data.get("short_description", "")).startswith("Data subject erasure request")
    ]
    assert len(tasks) == 1 and str(dsr.pk) in tasks[0]["short_description"]
    assert EMAIL not in str(tasks[0]) and "Jane" not in str(tasks[0])

    done = current(tenant_a, dsr)
    assert done.status == RequestStatus.COMPLETED and done.completed_at is not None
    assert {n["state"] for n in done.evidence["notifications"]} == {"delivered"}
    with tenant_context(tenant_a):
        # Delivered: the e-mail the vendor needed is dropped from the outbox row.
        assert not OutboxMessage.objects.filter(
            stream=ERASURE_STREAM, payload__has_key="lookup_email"
        ).exists()
        completed = AuditEvent.objects.get(action="dsr.completed", target_id=str(dsr.pk))
    assert set(completed.changes["vendors"].values()) == {"delivered"}
    assert EMAIL not in repr(completed.changes)


def test_vendor_down_is_retried_and_the_request_stays_in_progress(
    tenant_a: Tenant, alice: Any, vendors: Vendors, django_capture_on_commit_callbacks: Any
) -> None:
    vendors.hubspot.inject(outage="503")
    dsr = erase(tenant_a, alice, email=EMAIL)
    relay_all(tenant_a, vendors, django_capture_on_commit_callbacks)
    state = current(tenant_a, dsr)
    assert state.status == RequestStatus.IN_PROGRESS
    by_kind = {n["kind"]: n["state"] for n in state.evidence["notifications"]}
    assert by_kind == {"hubspot": "pending", "salesforce": "delivered", "servicenow": "delivered"}
    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get(stream=ERASURE_STREAM, connection=vendors.connections["hubspot"])
    assert message.status == OutboxStatus.PENDING and message.attempts == 1 and message.last_error
    assert vendors.hubspot.gdpr_deletes == []

    vendors.hubspot.clear_faults()
    make_due(tenant_a)
    relay_all(tenant_a, vendors, django_capture_on_commit_callbacks)
    assert vendors.hubspot.gdpr_deletes == [{"objectId": vendors.hubspot_contact, "idProperty": None}]
    assert current(tenant_a, dsr).status == RequestStatus.COMPLETED


def test_dead_notification_is_settled_by_an_operator_with_a_reason(
    tenant_a: Tenant, alice: Any, vendors: Vendors, django_capture_on_commit_callbacks: Any
) -> None:
    vendors.servicenow.inject(errors=[{"status": 400}])  # permanent: straight to the dead letters
    dead_before, completed_before = dsr_count("vendor_dead"), dsr_count("completed")
    dsr = erase(tenant_a, alice, email=EMAIL)
    relay_all(tenant_a, vendors, django_capture_on_commit_callbacks)
    state = current(tenant_a, dsr)
    dead = next(n for n in state.evidence["notifications"] if n["kind"] == "servicenow")
    assert dead["state"] == "dead" and state.status == RequestStatus.IN_PROGRESS
    delivered = next(n for n in state.evidence["notifications"] if n["kind"] == "hubspot")
    with pytest.raises(ValidationFailed):  # only undeliverable notifications can be settled by hand
        dsr_notification_handle(
            tenant=tenant_a, dsr=state, notice_id=delivered["id"], reason="x", actor=alice
        )
    with pytest.raises(ValidationFailed):
        dsr_notification_handle(tenant=tenant_a, dsr=state, notice_id=dead["id"], reason=" ", actor=alice)
    dsr_notification_handle(
        tenant=tenant_a,
        dsr=state,
        notice_id=dead["id"],
        reason="Deleted by the ServiceNow admin, ticket INC0010001",
        actor=alice,
    )
    done = current(tenant_a, dsr)
    assert done.status == RequestStatus.COMPLETED
    assert dsr_count("vendor_dead") == dead_before + 1 and dsr_count("completed") == completed_before + 1
    handled = next(n for n in done.evidence["notifications"] if n["kind"] == "servicenow")
    assert (handled["state"], handled["handled_reason"]) == (
        "handled",
        "Deleted by the ServiceNow admin, ticket INC0010001",
    )
    with tenant_context(tenant_a):
        event = AuditEvent.objects.get(action="dsr.notification_handled")
    assert event.actor_id == alice.pk and event.changes["state_before"] == "dead"


def test_sap_partners_are_marked_for_deletion_by_number_only(
    tenant_a: Tenant, alice: Any, simulator: StartSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    sap = simulator(SapSimulator, counts=TINY)
    connection = demo_connection(tenant_a, "sap", sap.describe(), name="SAP")
    partner = next(iter(sap.tables["contacts"].rows))
    with tenant_context(tenant_a):
        synced(connection, stream="contacts", vendor_id=partner, email=EMAIL, name="Jane")
        synced(connection, stream="contacts", vendor_id="0099999999", email=EMAIL, name="Jane")  # gone in SAP
    dsr = erase(tenant_a, alice, email=EMAIL)
    with tenant_context(tenant_a):
        message = OutboxMessage.objects.get(stream=ERASURE_STREAM)
    assert "lookup_email" not in message.payload  # SAP gets the partner numbers it holds, nothing more
    with (
        tenant_context(tenant_a),
        django_capture_on_commit_callbacks(using=as_ref(tenant_a).db_alias, execute=True),
    ):
        outbox_relay(connection_id=connection.pk)
    assert sap.archiving_flagged() == [partner]
    done = current(tenant_a, dsr)
    assert done.status == RequestStatus.COMPLETED
    assert [(n["kind"], n["state"]) for n in done.evidence["notifications"]] == [("sap", "delivered")]


def test_chat_platform_accounts_are_not_vendors_to_tell(
    tenant_a: Tenant, alice: Any, simulator: StartSimulator
) -> None:
    platform_connection(tenant_a, "whatsapp", simulator(WhatsAppSimulator))
    offline_connection(tenant_a, "hubspot")
    dsr = erase(tenant_a, alice, email=EMAIL)
    assert [n["kind"] for n in dsr.evidence["notifications"]] == ["hubspot"]


def test_a_disabled_connection_is_left_to_an_operator(tenant_a: Tenant, alice: Any) -> None:
    connection = offline_connection(tenant_a, "hubspot")
    with tenant_context(tenant_a):
        Connection.objects.filter(pk=connection.pk).update(enabled=False)
    dsr = erase(tenant_a, alice, email=EMAIL)
    [notice] = dsr.evidence["notifications"]
    assert (notice["kind"], notice["state"], notice["message_id"]) == ("hubspot", "manual", None)
    assert dsr.status == RequestStatus.IN_PROGRESS
    with tenant_context(tenant_a):
        assert not OutboxMessage.objects.filter(stream=ERASURE_STREAM).exists()  # it would never be delivered
    done = dsr_notification_handle(
        tenant=tenant_a,
        dsr=dsr,
        notice_id=notice["id"],
        reason="Deleted by hand in the HubSpot portal",
        actor=alice,
    )
    assert done is not None and done.status == RequestStatus.COMPLETED
    assert done.evidence["notifications"][0]["handled_reason"] == "Deleted by hand in the HubSpot portal"


def test_other_tenant_connections_are_never_told(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any, vendors: Vendors
) -> None:
    offline_connection(tenant_b, "hubspot")
    erase(tenant_a, alice, email=EMAIL)
    with tenant_context(tenant_b):
        assert not OutboxMessage.objects.filter(stream=ERASURE_STREAM).exists()
