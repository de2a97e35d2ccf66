"""Data-subject request tests: a seeded subject (synced CRM records, a chat conversation, an outbox write)
in tenant A, someone else in tenant A, and the same address in tenant B; vendors' simulators on demand."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from apps.chat.models import Conversation, Message
from apps.chat.retention import user_ref_hash
from apps.core.context import as_ref, tenant_context
from apps.integrations.models import Connection, SyncedRecord
from apps.integrations.services.outbox import outbox_enqueue
from apps.tenants.models import Tenant
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.salesforce.simulator import SalesforceSimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from tests.fixtures.integrations import demo_connection, sf_connection
from tests.fixtures.simulators import TINY, StartSimulator

EMAIL = "jane.subject@example.test"
PHONE = "+49 170 5550123"
USER_REF = "widget-user-4711"
OTHER_EMAIL = "someone.else@example.test"


@pytest.fixture
def sf_counts() -> Mapping[str, int]:
    return TINY


def synced(connection: Connection, *, stream: str, vendor_id: str, email: str, name: str) -> SyncedRecord:
    now = timezone.now()
    fields = {"email": email, "first_name": name, "phone": PHONE if email == EMAIL else ""}
    return SyncedRecord.objects.create(
        connection=connection,
        stream=stream,
        external_id=vendor_id,
        updated_at=now,
        email=email,
        display_name=name,
        fields=fields,
        raw={"Id": vendor_id},
        content_hash=hashlib.sha256(vendor_id.encode()).hexdigest(),
        synced_at=now,
    )


def conversation(tenant: Tenant, *, user_ref: str, text: str, actions: list[dict[str, Any]]) -> Conversation:
    with tenant_context(tenant):
        conv = Conversation(
            channel_id=uuid.uuid4(),
            channel_kind="web",
            user_ref=user_ref,
            user_ref_hash=user_ref_hash(tenant_id=tenant.id, user_ref=user_ref),
            locale="en",
            region=tenant.region_code,
        )
        conv.save()
        question = Message.objects.create(conversation=conv, role="user", text=text)
        Message.objects.create(
            conversation=conv,
            role="assistant",
            text="A ticket was opened.",
            reply_to=question,
            actions=actions,
        )
    return conv


@dataclass
class Seeded:
    connection: Connection
    subject_record: SyncedRecord
    other_record: SyncedRecord
    conversation: Conversation
    other_conversation: Conversation


@pytest.fixture
def seeded(tenant_a: Tenant, tenant_b: Tenant, offline_sf_conn: Connection) -> Seeded:
    """The subject's data in tenant A (no vendor is called), someone else's, and the same address in B."""
    with tenant_context(tenant_a):
        mine = synced(
            offline_sf_conn, stream="contacts", vendor_id="003SUBJECT0000001", email=EMAIL, name="Jane"
        )
        other = synced(
            offline_sf_conn,
            stream="contacts",
            vendor_id="003OTHER000000001",
            email=OTHER_EMAIL,
            name="Someone",
        )
        with transaction.atomic(using=as_ref(tenant_a).db_alias):
            outbox_enqueue(
                connection=offline_sf_conn,
                stream="leads",
                ordering_key="lead-jane",
                payload={"email": EMAIL, "last_name": "Subject", "company": "Acme"},
            )
            outbox_enqueue(
                connection=offline_sf_conn,
                stream="leads",
                ordering_key="lead-other",
                payload={"email": OTHER_EMAIL, "last_name": "Else", "company": "Acme"},
            )
    action = {
        "type": "create_ticket",
        "status": "queued",
        "reference": "hub-ticket-1",
        "connector": "salesforce",
    }
    conv = conversation(tenant_a, user_ref=USER_REF, text="My order never arrived", actions=[action])
    other_conv = conversation(tenant_a, user_ref="widget-user-9999", text="Someone else's words", actions=[])
    # Tenant B holds the same person: never part of tenant A's answers.
    conversation(tenant_b, user_ref=USER_REF, text="Tenant B transcript", actions=[])
    return Seeded(offline_sf_conn, mine, other, conv, other_conv)


@dataclass
class Vendors:
    hubspot: HubSpotSimulator
    salesforce: SalesforceSimulator
    servicenow: ServiceNowSimulator
    connections: dict[str, Connection]
    hubspot_contact: str
    salesforce_contact: str


@pytest.fixture
def vendors(tenant_a: Tenant, simulator: StartSimulator) -> Vendors:
    """HubSpot, Salesforce and ServiceNow simulators, the subject's contact in each, synced to tenant A."""
    hs = simulator(HubSpotSimulator, counts=TINY)
    sf = simulator(SalesforceSimulator, counts=TINY)
    sn = simulator(ServiceNowSimulator, counts=TINY)
    connections = {
        "hubspot": demo_connection(tenant_a, "hubspot", hs.describe(), name="HubSpot"),
        "salesforce": sf_connection(tenant_a, sf),
        "servicenow": demo_connection(tenant_a, "servicenow", sn.describe(), name="ServiceNow"),
    }
    hs_row = next(iter(hs.by_type["contacts"].rows.values()))
    hs.by_type["contacts"].update(hs_row.id, {"email": EMAIL})
    sf_row = next(iter(sf.tables["contacts"].rows.values()))
    sf.tables["contacts"].update(sf_row.id, {"Email": EMAIL})
    sn_row = next(iter(sn.tables["contacts"].rows.values()))
    with tenant_context(tenant_a):
        synced(connections["hubspot"], stream="contacts", vendor_id=hs_row.id, email=EMAIL, name="Jane")
        synced(connections["salesforce"], stream="contacts", vendor_id=sf_row.id, email=EMAIL, name="Jane")
        synced(connections["servicenow"], stream="contacts", vendor_id=sn_row.id, email=EMAIL, name="Jane")
    return Vendors(hs, sf, sn, connections, hs_row.id, sf_row.id)
