"""What the data-subject request tests share: the subject's identifiers, seeding helpers, fixture types."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from apps.chat.models import Conversation, Message
from apps.chat.retention import user_ref_hash
from apps.core.context import tenant_context
from apps.integrations.models import Connection, SyncedRecord
from apps.tenants.models import Tenant
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.salesforce.simulator import SalesforceSimulator
from connectors.servicenow.simulator import ServiceNowSimulator

EMAIL = "jane.subject@example.test"
PHONE = "+49 170 5550123"
USER_REF = "widget-user-4711"
OTHER_EMAIL = "someone.else@example.test"


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


@dataclass
class Vendors:
    hubspot: HubSpotSimulator
    salesforce: SalesforceSimulator
    servicenow: ServiceNowSimulator
    connections: dict[str, Connection]
    hubspot_contact: str
    salesforce_contact: str
