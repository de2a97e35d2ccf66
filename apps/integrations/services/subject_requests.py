"""Data-subject requests, integrations' part (issue 22): what the hub synced or queued about a person
(access archives), and telling each connected vendor to erase the person through the outbox.

Registered with apps.policies.registry in IntegrationsConfig.ready (policies may not import integrations).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from apps.core.context import TenantRef, current_tenant, tenant_context
from apps.integrations.conf import connector_class
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus, SyncedRecord
from apps.integrations.services.outbox import outbox_enqueue
from apps.integrations.services.sync import with_phone_digits
from apps.policies.registry import Subject, VendorNotice
from connectors.base import CANONICAL_STREAMS
from connectors.erasure import ERASE_BY_EMAIL, ERASURE_STREAM
from connectors.errors import ConnectorError
from connectors.http import HttpSession

logger = logging.getLogger(__name__)

#: Synced streams whose records are people (what a vendor is asked to erase).
PERSON_STREAMS = ("contacts", "leads")
#: Evidence state of a connection whose connector offers no erasure stream: an operator handles it by hand.
MANUAL = "manual"


def _subject_records(subject: Subject) -> QuerySet[SyncedRecord] | None:
    """The synced records naming the subject: e-mail (stored normalized), the vendor's id, or a phone
    number in any phone field (digits compared, as the eraser does); None when nothing identifies them."""
    records = SyncedRecord.objects.all()
    query = Q()
    if subject.email:
        query |= Q(email=subject.email)
    if subject.external_id:
        query |= Q(external_id=subject.external_id)
    if subject.phone:
        records, phone_query = with_phone_digits(records, "fields", subject.phone)
        query |= phone_query
    return records.filter(query) if query else None


def _subject_messages(subject: Subject) -> QuerySet[OutboxMessage] | None:
    """The outbox messages carrying the subject's e-mail or phone: the same match as the outbox eraser."""
    messages = OutboxMessage.objects.all()
    query = Q()
    if subject.email:
        query |= Q(payload__email__iexact=subject.email)
    if subject.phone:
        messages, phone_query = with_phone_digits(messages, "payload", subject.phone)
        query |= phone_query
    return messages.filter(query) if query else None


# --- access ------------------------------------------------------------------------------------------------
def export_synced_records(*, tenant: TenantRef, subject: Subject, limit: int) -> list[dict[str, Any]]:
    """The synced CRM records naming the subject (by e-mail, phone number or the vendor's id)."""
    with tenant_context(tenant):
        records = _subject_records(subject)
        if records is None:
            return []
        rows = (
            records
            .order_by("connection_id", "stream", "external_id")
            .values("connection__name", "connection__kind", "stream", "external_id", "updated_at", "deleted",
                    "email", "display_name", "status", "number", "fields")[:limit]
        )  # fmt: skip
        return [
            {**{k: v for k, v in row.items() if not k.startswith("connection__")},
             "connection": row["connection__name"], "vendor": row["connection__kind"]}
            for row in rows
        ]  # fmt: skip


def export_outbox_messages(*, tenant: TenantRef, subject: Subject, limit: int) -> list[dict[str, Any]]:
    """Writes the hub queued to vendors about the subject (matched as the outbox eraser does)."""
    with tenant_context(tenant):
        messages = _subject_messages(subject)
        if messages is None:
            return []
        rows = (
            messages
            .order_by("id")
            .values("id", "connection__name", "stream", "external_id", "status", "created_at", "delivered_at",
                    "vendor_id", "payload")[:limit]
        )  # fmt: skip
        found = [dict(row) for row in rows]
        for row in found:
            row["connection"] = row.pop("connection__name")
        return found


# --- erasure -----------------------------------------------------------------------------------------------
class OutboxErasureNotifier:
    """One `erasure_requests` outbox message per enabled connection to a system of records; the connector
    does the vendor's part. Connections without the stream, or disabled, get a notice an operator settles."""

    def notify(self, *, tenant: TenantRef, subject: Subject, request_id: str) -> list[VendorNotice]:
        notices: list[VendorNotice] = []
        with tenant_context(tenant):
            subject_records = _subject_records(subject)
            connections = list(Connection.objects.order_by("name"))
            for connection in connections:
                support = _erasure_support(connection)
                if support is None:
                    continue  # a chat platform account, not a system of records
                # A disabled connection delivers nothing: its vendor may hold the person, a person must check.
                if not support or not connection.enabled:
                    notices.append(
                        VendorNotice(str(connection.pk), connection.name, connection.kind, None, MANUAL)
                    )
                    continue
                records = []
                if subject_records is not None:
                    records = [
                        {"stream": stream, "id": vendor_id}
                        for stream, vendor_id in subject_records.filter(
                            connection=connection, stream__in=PERSON_STREAMS
                        )
                        .order_by("stream", "external_id")
                        .values_list("stream", "external_id")
                    ]
                payload: dict[str, Any] = {"request": request_id, "records": records}
                if connection.kind in ERASE_BY_EMAIL and subject.email:
                    payload["lookup_email"] = subject.email
                with transaction.atomic(using=tenant.db_alias):
                    message = outbox_enqueue(
                        connection=connection,
                        stream=ERASURE_STREAM,
                        payload=payload,
                        ordering_key=f"erasure:{request_id}",
                        external_id=f"hub-erasure-{request_id}",
                        operation="erase",
                    )
                notices.append(
                    VendorNotice(
                        str(connection.pk), connection.name, connection.kind, message.pk, message.status
                    )
                )
        return notices

    def states(self, *, tenant: TenantRef, message_ids: list[int]) -> dict[int, str]:
        with tenant_context(tenant):
            return dict(OutboxMessage.objects.filter(pk__in=message_ids).values_list("pk", "status"))


def _erasure_support(connection: Connection) -> bool | None:
    """True when the connector has the erasure stream, False when it holds records but has none (an operator
    handles it), None when it holds no records at all (a chat platform account). No network: config only."""
    try:
        connector = connector_class(connection.kind)(connection.connector_config(), session=HttpSession())
        streams = connector.streams()
    except (ConnectorError, LookupError, ValueError):
        return False  # unreadable settings: the vendor may still hold the person, so a person must check
    if not any(s.readable and s.name in CANONICAL_STREAMS for s in streams):
        return None
    return any(s.name == ERASURE_STREAM and s.writable for s in streams)


def erasure_settled(*, message: OutboxMessage, status: str) -> None:
    """Once a vendor erasure request is delivered, drop the e-mail it carried and update the request."""
    if message.stream != ERASURE_STREAM:
        return
    from apps.policies.dsr import dsr_refresh

    tenant = current_tenant()  # the relay delivers inside the message's tenant context
    if status == OutboxStatus.DELIVERED:
        payload = {k: v for k, v in (message.payload or {}).items() if k != "lookup_email"}
        OutboxMessage.objects.filter(pk=message.pk).update(payload=payload)
    request_id = (message.payload or {}).get("request")
    if request_id:
        dsr_refresh(tenant=tenant, request_id=request_id)
