"""Signed deliveries as each vendor sends them, and what the hub made of them."""

from __future__ import annotations

import json
import time
from typing import Any

from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.integrations.models import Connection, RunStatus, SyncRun
from apps.integrations.selectors.webhooks import webhook_rejections
from apps.integrations.services.webhooks import hmac_signature, hubspot_signature
from apps.tenants.models import Tenant
from tests.fixtures.integrations import HUBSPOT_SECRET


def hubspot_url(connection: Connection) -> str:
    return reverse("integrations:webhook-hubspot", kwargs={"connection_id": connection.pk})


def post_hubspot(
    client: Client,
    connection: Connection,
    events: list[dict[str, Any]],
    *,
    secret: str = HUBSPOT_SECRET,
    age_ms: int = 0,
    body: bytes | None = None,
) -> Any:
    url = hubspot_url(connection)
    body = json.dumps(events).encode() if body is None else body
    stamp = str(int(time.time() * 1000) - age_ms)
    signature = hubspot_signature(
        secret=secret, method="POST", uri=f"http://testserver{url}", body=body, timestamp=stamp
    )
    return client.post(
        url,
        data=body,
        content_type="application/json",
        headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp},
    )


def hs_event(event_id: int, kind: str = "contact.propertyChange") -> dict[str, Any]:
    return {"eventId": event_id, "objectId": 1000 + event_id, "subscriptionType": kind, "portalId": 62515}


def runs(tenant: Tenant, connection: Connection, **filters: Any) -> list[SyncRun]:
    with tenant_context(tenant):
        return list(SyncRun.objects.filter(connection=connection, **filters).order_by("id"))


def finish_runs(tenant: Tenant, connection: Connection) -> None:
    """What a worker does with the queued runs (the tests run no worker: on_commit never fires here)."""
    with tenant_context(tenant):
        SyncRun.objects.filter(connection=connection).update(status=RunStatus.SUCCEEDED)


def rejections(tenant: Tenant, connection: Connection) -> dict[str, int]:
    with tenant_context(tenant):
        return webhook_rejections(connections=[connection])[connection.pk]


def rejection_audits(tenant: Tenant) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action="webhook.rejected"))


SF_NS = 'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def outbound_message(org_id: str, notes: list[tuple[str, str, str]], *, doctype: str = "") -> bytes:
    """A Salesforce Outbound Message: (notification id, sObject type, record id) per notification."""
    items = "".join(
        f"<Notification><Id>{nid}</Id>"
        f'<sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{rid}</sf:Id><sf:Email>person@example.test</sf:Email></sObject></Notification>"
        for nid, kind, rid in notes
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<soapenv:Envelope {SF_NS}><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org_id}</OrganizationId><ActionId>04k5g000000XXXXAAA</ActionId>"
        '<SessionId xsi:nil="true"/><EnterpriseUrl>https://acme.my.salesforce.example/services/Soap/c/59.0'
        f"</EnterpriseUrl>{items}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def post_salesforce(client: Client, connection: Connection, token: str, body: bytes) -> Any:
    url = reverse("integrations:webhook-salesforce", kwargs={"connection_id": connection.pk, "token": token})
    return client.post(url, data=body, content_type="text/xml; charset=utf-8", headers={"SOAPAction": '""'})


def post_servicenow(
    client: Client, connection: Connection, secret: str, payload: Any, *, age: int = 0
) -> Any:
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()) - age)
    url = reverse("integrations:webhook-servicenow", kwargs={"connection_id": connection.pk})
    return client.post(
        url,
        data=body,
        content_type="application/json",
        headers={
            "X-Hub-Signature-256": hmac_signature(secret=secret, body=body, timestamp=stamp),
            "X-Hub-Request-Timestamp": stamp,
        },
    )
