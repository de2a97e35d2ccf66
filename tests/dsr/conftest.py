"""Data-subject request tests: a seeded subject (synced CRM records, a chat conversation, an outbox write)
in tenant A, someone else in tenant A, and the same address in tenant B; vendors' simulators on demand."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from django.db import transaction

from apps.core.context import as_ref, tenant_context
from apps.integrations.models import Connection
from apps.integrations.services.outbox import outbox_enqueue
from apps.tenants.models import Tenant
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.salesforce.simulator import SalesforceSimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from tests.dsr.helpers import EMAIL, OTHER_EMAIL, USER_REF, Seeded, Vendors, conversation, synced
from tests.fixtures.integrations import demo_connection, sf_connection
from tests.fixtures.simulators import TINY, StartSimulator


@pytest.fixture
def sf_counts() -> Mapping[str, int]:
    return TINY


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
