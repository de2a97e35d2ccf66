"""Webhook ingestion: verified deliveries become targeted syncs; everything else is a counted 401."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.integrations.models import Connection, RunStatus, SyncRun
from apps.integrations.services.connections import connection_set_enabled, connection_update
from apps.integrations.services.sync import stream_pause
from apps.integrations.services.webhooks import (
    MAX_BODY_BYTES,
    connection_webhook_secret_rotate,
    hubspot_signature,
)
from apps.tenants.models import Tenant
from tests.fixtures.integrations import HUBSPOT_SECRET, ORG_ID
from tests.webhooks.helpers import (
    finish_runs,
    hs_event,
    hubspot_url,
    outbound_message,
    post_hubspot,
    post_salesforce,
    post_servicenow,
    rejection_audits,
    rejections,
    runs,
)

pytestmark = pytest.mark.django_db


# --- HubSpot -----------------------------------------------------------------------------------------------
def test_hubspot_valid_signature_queues_a_targeted_sync(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    response = post_hubspot(client, hubspot, [hs_event(1), hs_event(2, "company.creation")])
    assert response.status_code == 204
    queued = runs(tenant_a, hubspot)
    assert sorted((r.stream, r.trigger, r.status, r.backfill) for r in queued) == [
        ("accounts", "webhook", "queued", False),
        ("contacts", "webhook", "queued", False),
    ]
    assert rejections(tenant_a, hubspot) == {}


def test_hubspot_duplicate_delivery_is_processed_once(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    assert post_hubspot(client, hubspot, [hs_event(7)]).status_code == 204
    finish_runs(tenant_a, hubspot)
    # HubSpot retries the same event (e.g. our 2xx got lost): accepted, but no second sync.
    assert post_hubspot(client, hubspot, [hs_event(7)]).status_code == 204
    assert len(runs(tenant_a, hubspot)) == 1
    # A new event for the same stream is new work.
    assert post_hubspot(client, hubspot, [hs_event(8)]).status_code == 204
    assert len(runs(tenant_a, hubspot)) == 2


def test_a_burst_coalesces_into_one_queued_run(client: Client, tenant_a: Tenant, hubspot: Connection) -> None:
    for n in range(5):
        assert post_hubspot(client, hubspot, [hs_event(100 + n)]).status_code == 204
    assert [r.stream for r in runs(tenant_a, hubspot)] == ["contacts"]
    # Once the queued run started it may have read past a new change: the next event queues again.
    with tenant_context(tenant_a):
        SyncRun.objects.filter(connection=hubspot).update(status=RunStatus.RUNNING)
    assert post_hubspot(client, hubspot, [hs_event(200)]).status_code == 204
    assert [r.status for r in runs(tenant_a, hubspot)] == ["running", "queued"]


def test_paused_stream_is_not_synced_by_webhooks(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    with tenant_context(tenant_a):
        stream_pause(connection=hubspot, stream="contacts")
    assert post_hubspot(client, hubspot, [hs_event(1)]).status_code == 204
    assert runs(tenant_a, hubspot) == []


def test_hubspot_bad_signature_is_401_counted_and_audited_once(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    for _ in range(3):
        response = post_hubspot(client, hubspot, [hs_event(1)], secret="not-the-secret")
        assert response.status_code == 401
        assert response.content == b""
    assert runs(tenant_a, hubspot) == []
    assert rejections(tenant_a, hubspot) == {"signature": 3}
    audits = rejection_audits(tenant_a)
    assert len(audits) == 1, "at most one audit event a minute per connection"
    assert audits[0].outcome == "denied"
    assert audits[0].target_id == str(hubspot.pk)
    assert audits[0].changes == {"vendor": "hubspot", "reason": "signature"}


def test_hubspot_missing_headers_and_tampered_body_are_401(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    url = hubspot_url(hubspot)
    assert client.post(url, data=b"[]", content_type="application/json").status_code == 401
    good = post_hubspot(client, hubspot, [hs_event(1)])
    assert good.status_code == 204
    # Same headers, different body: the signature covers the body.
    stamp = str(int(time.time() * 1000))
    body = json.dumps([hs_event(1)]).encode()
    signature = hubspot_signature(
        secret=HUBSPOT_SECRET, method="POST", uri=f"http://testserver{url}", body=body, timestamp=stamp
    )
    tampered = client.post(
        url,
        data=json.dumps([hs_event(99)]),
        content_type="application/json",
        headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp},
    )
    assert tampered.status_code == 401
    assert rejections(tenant_a, hubspot) == {"signature": 2}


def test_hubspot_stale_timestamp_is_401(client: Client, tenant_a: Tenant, hubspot: Connection) -> None:
    response = post_hubspot(client, hubspot, [hs_event(1)], age_ms=6 * 60 * 1000)
    assert response.status_code == 401
    assert runs(tenant_a, hubspot) == []
    assert rejections(tenant_a, hubspot) == {"stale": 1}
    assert post_hubspot(client, hubspot, [hs_event(1)], age_ms=4 * 60 * 1000).status_code == 204


def test_hubspot_signed_but_unreadable_body_is_400(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    assert post_hubspot(client, hubspot, [], body=b"{not json").status_code == 400
    assert post_hubspot(client, hubspot, [], body=b'[{"objectId": 1}]').status_code == 400
    assert runs(tenant_a, hubspot) == []


def test_unknown_object_types_are_acknowledged_without_a_sync(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    assert post_hubspot(client, hubspot, [hs_event(1, "deal.creation")]).status_code == 204
    assert runs(tenant_a, hubspot) == []


# --- unknown, disabled, oversized --------------------------------------------------------------------------
def test_unknown_connection_is_401(client: Client, tenant_a: Tenant, hubspot: Connection) -> None:
    url = reverse("integrations:webhook-hubspot", kwargs={"connection_id": uuid.uuid4()})
    response = client.post(url, data=b"[]", content_type="application/json")
    assert response.status_code == 401
    assert response.content == b""


def test_connection_of_another_vendor_is_401(
    client: Client, tenant_a: Tenant, servicenow: tuple[Connection, str]
) -> None:
    connection, _secret = servicenow
    response = post_hubspot(client, connection, [hs_event(1)])
    assert response.status_code == 401
    assert rejections(tenant_a, connection) == {"wrong_vendor": 1}


def test_disabled_connection_is_401_even_with_a_valid_signature(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    connection_set_enabled(connection=hubspot, tenant=tenant_a, enabled=False)
    assert post_hubspot(client, hubspot, [hs_event(1)]).status_code == 401
    assert runs(tenant_a, hubspot) == []
    assert rejections(tenant_a, hubspot) == {"disabled": 1}


def test_oversized_body_is_413_and_never_processed(
    client: Client, tenant_a: Tenant, hubspot: Connection
) -> None:
    events = [hs_event(n) | {"padding": "x" * 20_000} for n in range(60)]
    body = json.dumps(events).encode()
    assert len(body) > MAX_BODY_BYTES
    assert post_hubspot(client, hubspot, events, body=body).status_code == 413
    assert runs(tenant_a, hubspot) == []
    assert rejections(tenant_a, hubspot) == {"too_large": 1}


# --- Salesforce Outbound Messages --------------------------------------------------------------------------
def test_salesforce_outbound_message_is_acked_and_queues_syncs(
    client: Client, tenant_a: Tenant, salesforce: tuple[Connection, str]
) -> None:
    connection, token = salesforce
    body = outbound_message(
        ORG_ID,
        [
            ("04l5g00000AAAA1", "Contact", "003A"),
            ("04l5g00000AAAA2", "Case", "500A"),
            ("04l5g00000AAAA3", "Contact", "003B"),
        ],
    )
    response = post_salesforce(client, connection, token, body)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    from lxml import etree

    root = etree.fromstring(response.content)
    ns = {"s": "http://schemas.xmlsoap.org/soap/envelope/", "o": "http://soap.sforce.com/2005/09/outbound"}
    assert root.xpath("/s:Envelope/s:Body/o:notificationsResponse/o:Ack/text()", namespaces=ns) == ["true"]
    assert sorted(r.stream for r in runs(tenant_a, connection, trigger="webhook")) == ["contacts", "tickets"]
    # Salesforce redelivers (at least once): acknowledged again, nothing new queued.
    finish_runs(tenant_a, connection)
    assert post_salesforce(client, connection, token, body).status_code == 200
    assert len(runs(tenant_a, connection)) == 2


def test_salesforce_15_character_org_id_matches(
    client: Client, tenant_a: Tenant, salesforce: tuple[Connection, str]
) -> None:
    connection, token = salesforce
    body = outbound_message(ORG_ID[:15], [("04l5g00000BBBB1", "Lead", "00QA")])
    assert post_salesforce(client, connection, token, body).status_code == 200
    assert [r.stream for r in runs(tenant_a, connection)] == ["leads"]


def test_salesforce_wrong_org_id_is_401(
    client: Client, tenant_a: Tenant, salesforce: tuple[Connection, str]
) -> None:
    connection, token = salesforce
    body = outbound_message("00D000000000001AAA", [("04l5g00000AAAA1", "Contact", "003A")])
    response = post_salesforce(client, connection, token, body)
    assert response.status_code == 401
    assert b"Ack" not in response.content
    assert runs(tenant_a, connection) == []
    assert rejections(tenant_a, connection) == {"org_id": 1}


def test_salesforce_wrong_token_is_401(
    client: Client, tenant_a: Tenant, salesforce: tuple[Connection, str]
) -> None:
    connection, token = salesforce
    body = outbound_message(ORG_ID, [("04l5g00000AAAA1", "Contact", "003A")])
    assert post_salesforce(client, connection, token[:-1] + "x", body).status_code == 401
    assert runs(tenant_a, connection) == []
    assert rejections(tenant_a, connection) == {"token": 1}


def test_salesforce_rejects_a_dtd(
    client: Client, tenant_a: Tenant, salesforce: tuple[Connection, str]
) -> None:
    connection, token = salesforce
    doctype = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    body = outbound_message(ORG_ID, [("04l5g00000AAAA1", "Contact", "&e;")], doctype=doctype)
    assert post_salesforce(client, connection, token, body).status_code == 401
    assert runs(tenant_a, connection) == []


def test_rotating_the_secret_retires_the_old_url(
    client: Client, tenant_a: Tenant, salesforce: tuple[Connection, str]
) -> None:
    connection, old = salesforce
    with tenant_context(tenant_a):
        new = connection_webhook_secret_rotate(connection=connection, actor=None)
        rotated = AuditEvent.objects.filter(action="connection.webhook_secret_rotated").first()
    assert new != old
    assert (
        rotated is not None
        and old not in json.dumps(rotated.changes)
        and new not in json.dumps(rotated.changes)
    )
    body = outbound_message(ORG_ID, [("04l5g00000AAAA1", "Contact", "003A")])
    assert post_salesforce(client, connection, old, body).status_code == 401
    assert post_salesforce(client, connection, new, body).status_code == 200


# --- ServiceNow (generic HMAC) ------------------------------------------------------------------------------
def test_servicenow_valid_signature_queues_a_sync(
    client: Client, tenant_a: Tenant, servicenow: tuple[Connection, str]
) -> None:
    connection, secret = servicenow
    payload = [
        {"id": "inc-1-v3", "table": "incident", "sys_id": "a1"},
        {"id": "kb-9", "table": "kb_knowledge"},
    ]
    assert post_servicenow(client, connection, secret, payload).status_code == 204
    assert sorted(r.stream for r in runs(tenant_a, connection, trigger="webhook")) == ["articles", "tickets"]


def test_servicenow_bad_or_stale_signature_is_401(
    client: Client, tenant_a: Tenant, servicenow: tuple[Connection, str]
) -> None:
    connection, secret = servicenow
    payload = {"id": "inc-1-v3", "table": "incident"}
    assert post_servicenow(client, connection, "wrong", payload).status_code == 401
    assert post_servicenow(client, connection, secret, payload, age=301).status_code == 401
    assert runs(tenant_a, connection) == []
    assert rejections(tenant_a, connection) == {"signature": 1, "stale": 1}


def test_servicenow_without_a_secret_refuses_everything(client: Client, tenant_a: Tenant) -> None:
    from tests.fixtures.integrations import offline_connection

    connection = offline_connection(tenant_a, "servicenow")
    assert post_servicenow(client, connection, "", {"id": "1", "table": "incident"}).status_code == 401
    assert rejections(tenant_a, connection) == {"no_secret": 1}


# --- the secret lives with the credentials, apart from the connector's own ---------------------------------
def test_webhook_secret_survives_credential_edits_and_stays_out_of_the_connector(
    tenant_a: Tenant, servicenow: tuple[Connection, str]
) -> None:
    connection, secret = servicenow
    connection_update(connection=connection, tenant=tenant_a, credentials={"password": "new-password"})
    with tenant_context(tenant_a):
        stored = Connection.objects.get(pk=connection.pk)
        assert stored.secrets == {"password": "new-password", "webhook_secret": secret}
        assert "webhook_secret" not in stored.connector_config()
        events = AuditEvent.objects.filter(action="connection.credentials_changed").first()
    assert events is not None and events.changes == {"fields": ["password"]}


def test_org_id_survives_settings_edits(tenant_a: Tenant, salesforce: tuple[Connection, str]) -> None:
    connection, _token = salesforce
    settings = {"login_url": "https://acme2.my.salesforce.example", "client_id": "consumer-key"}
    # A new login URL needs the credentials again (they are bound to the address they were entered for).
    connection_update(
        connection=connection, tenant=tenant_a, settings=settings, credentials={"client_secret": "s3cret-2"}
    )
    connection_update(connection=connection, tenant=tenant_a, name="Renamed")
    with tenant_context(tenant_a):
        stored = Connection.objects.get(pk=connection.pk)
        assert "webhook_org_id" not in stored.connector_config()
    assert stored.settings["webhook_org_id"] == ORG_ID
    assert stored.settings["login_url"] == "https://acme2.my.salesforce.example"
