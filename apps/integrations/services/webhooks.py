"""Webhook ingestion: verify a vendor's change notification, de-duplicate it, turn it into targeted syncs.

A notification only says "something changed"; the sync engine reads from the stream's cursor, so the work
it causes is an incremental run of the stream soon. Everything here is cheap and answers fast; the sync
itself runs in Celery. Every piece of state (seen event ids, rejection counters, the audit throttle, rate
limits) lives in Redis, shared by all web processes.

Per vendor (see /work/shared/vendors/*.md):

- HubSpot signs `method + full URI + body + timestamp` with the app's client secret (X-HubSpot-Signature-v3,
  base64) and sends the time in ms (X-HubSpot-Request-Timestamp); the secret is the connection's
  `client_secret` credential, since HubSpot, not the hub, chooses it.
- Salesforce Outbound Messages carry no signature: the URL holds the connection's shared secret
  (`webhook_secret`) and the message's OrganizationId must match the configured org (`webhook_org_id`).
- ServiceNow has no signed webhooks; the hub defines them: `X-Hub-Signature-256: sha256=<hex>` over
  `<timestamp>.<body>` with the connection's `webhook_secret`, the timestamp (epoch seconds) in
  X-Hub-Request-Timestamp. The timestamp is signed: an unsigned one could be rewritten to replay a body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from lxml import etree
from redis.exceptions import RedisError

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.core import sql
from apps.core.context import current_tenant
from apps.core.errors import ValidationFailed
from apps.integrations.conf import connector_class
from apps.integrations.models import Connection, RunStatus, StreamState, SyncRun
from apps.integrations.resilience import BucketConfig, TokenBucket, redis_client
from apps.integrations.selectors.webhooks import REJECTION_DAYS, day_key, key_prefix, owner_key, rejection_key
from apps.integrations.services.sync import lock_key, sync_request
from apps.integrations.signals import ticket_activity
from connectors.errors import ConnectorError
from connectors.http import HttpSession

logger = logging.getLogger(__name__)

Vendor = Literal["hubspot", "salesforce", "servicenow"]
VENDORS: tuple[Vendor, ...] = ("hubspot", "salesforce", "servicenow")

#: The stream whose objects are tickets: a webhook naming one also refreshes the handoff on it (issue 18).
TICKETS_STREAM = "tickets"
#: Largest body read; a HubSpot batch (≤ 100 events) or a Salesforce message (≤ 100 notifications with
#: their fields) stays far below it.
MAX_BODY_BYTES = 1024 * 1024
#: Events per delivery, as the vendors document (Salesforce: ≤ 100 notifications; HubSpot batches ≤ 100).
MAX_EVENTS = 100
#: How old (or how far ahead, for clock skew) a signed timestamp may be.
TIMESTAMP_TOLERANCE = timedelta(minutes=5)
#: Vendors redeliver for up to 24 h (Salesforce) or ten times over hours (HubSpot); remember ids twice that.
DEDUPE_TTL_SECONDS = 48 * 3600
#: A queued run younger than this already covers a new change; an older one may have lost its message.
COALESCE_WINDOW = timedelta(minutes=10)
#: Generous per source address (vendors send many tenants' webhooks from shared egress addresses).
IP_RATE = BucketConfig(capacity=600, rate=100.0)
#: Per connection: bursts of a vendor's batch retries pass, a flood does not.
CONNECTION_RATE = BucketConfig(capacity=200, rate=20.0)

HUBSPOT_SIGNATURE = "X-HubSpot-Signature-v3"
HUBSPOT_TIMESTAMP = "X-HubSpot-Request-Timestamp"
HMAC_SIGNATURE = "X-Hub-Signature-256"
HMAC_TIMESTAMP = "X-Hub-Request-Timestamp"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SF_OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SF_SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
ORG_ID = re.compile(r"^00D[0-9A-Za-z]{12}([0-9A-Za-z]{3})?$")

SALESFORCE_ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}">'
    "<soapenv:Body>"
    f'<notificationsResponse xmlns="{SF_OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)


class Rejected(Exception):
    """A delivery the hub refuses; `reason` is for counters and the audit trail, never for the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Malformed(Exception):
    """An authentic delivery whose body the hub cannot read (400: the sender's bug, not an attack)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One change notification: the vendor's id for it (to de-duplicate), the object type it names and,
    when the vendor says, the changed object's id (a ticket's, to refresh its handoff at once)."""

    id: str
    vendor_object: str
    object_id: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    events: int
    new: int
    queued: list[str]


# --- secrets -----------------------------------------------------------------------------------------------
def signing_secret(connection: Connection) -> str:
    """The secret a delivery for `connection` is checked against ("" when none is configured)."""
    stored = connection.secrets
    if connection.kind == "hubspot":
        return str(stored.get("client_secret") or "")
    return str(stored.get("webhook_secret") or "")


def connection_webhook_secret_rotate(
    *, connection: Connection, actor: Any, request: HttpRequest | None = None
) -> str:
    """Generate a new webhook secret, store it encrypted with the credentials and return it (shown once).

    The old secret stops working at once: configure the new one at the vendor right after rotating.
    Call inside the connection's tenant context.
    """
    if connection.kind not in ("salesforce", "servicenow"):
        raise ValidationFailed(_("This vendor signs webhooks with its own secret; nothing to rotate here."))
    secret = secrets.token_urlsafe(32)
    connection.set_secrets({**connection.secrets, "webhook_secret": secret})
    connection.save(update_fields=["credentials", "updated_at"])
    audit_record(
        "connection.webhook_secret_rotated",
        tenant=current_tenant(),
        actor=actor,
        request=request,
        target=connection,
        changes={"fields": ["webhook_secret"]},
    )
    return secret


def connection_webhook_org_set(
    *, connection: Connection, org_id: str, actor: Any, request: HttpRequest | None = None
) -> Connection:
    """Set the Salesforce organization id Outbound Messages must carry (15 or 18 characters, 00D…)."""
    org_id = org_id.strip()
    if connection.kind != "salesforce":
        raise ValidationFailed(_("Only Salesforce connections have an organization id."))
    if not ORG_ID.match(org_id):
        message = _("Enter a Salesforce organization id: 15 or 18 letters and digits starting with 00D.")
        raise ValidationFailed(message, {"org_id": [message]})
    before = connection.settings.get("webhook_org_id", "")
    if before == org_id:
        return connection
    connection.settings = {**connection.settings, "webhook_org_id": org_id}
    connection.save(update_fields=["settings", "updated_at"])
    audit_record(
        "connection.webhook_org_changed",
        tenant=current_tenant(),
        actor=actor,
        request=request,
        target=connection,
        changes={"webhook_org_id": [before, org_id]},
    )
    return connection


# --- rate limits -------------------------------------------------------------------------------------------
def throttle_wait(*, scope: str, config: BucketConfig) -> float:
    """Seconds the caller must wait before another delivery from `scope` (0.0 = go on).

    Fails open while Redis is unreachable: a vendor's change notification is worth more than the limit, the
    body is bounded and verified before any write, and a refused delivery might never be sent again.
    """
    try:
        return TokenBucket(f"webhooks:{scope}", config=config).acquire()
    except RedisError:
        logger.warning("webhook rate limit skipped: Redis is unavailable")
        return 0.0


# --- verification ------------------------------------------------------------------------------------------
def _fresh(moment: datetime, now: datetime) -> bool:
    return abs(now - moment) <= TIMESTAMP_TOLERANCE


def _timestamp(value: str, *, unit: float) -> datetime:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Rejected("bad_timestamp") from None
    try:
        return datetime.fromtimestamp(number / unit, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise Rejected("bad_timestamp") from None


def hubspot_signature(*, secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 signature (base64 HMAC-SHA256 of method, URI, body and timestamp)."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def hmac_signature(*, secret: str, body: bytes, timestamp: str) -> str:
    """The hub's generic signature header value: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_hubspot(
    *, secret: str, method: str, uri: str, body: bytes, headers: Mapping[str, str], now: datetime
) -> None:
    signature, stamp = headers.get(HUBSPOT_SIGNATURE, ""), headers.get(HUBSPOT_TIMESTAMP, "")
    if not secret:
        raise Rejected("no_secret")
    if not signature or not stamp:
        raise Rejected("signature")
    # The signature first: a forged request must not learn whether its timestamp was acceptable.
    expected = hubspot_signature(secret=secret, method=method, uri=uri, body=body, timestamp=stamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Rejected("signature")
    if not _fresh(_timestamp(stamp, unit=1000), now):
        raise Rejected("stale")


def verify_hmac(*, secret: str, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
    signature, stamp = headers.get(HMAC_SIGNATURE, ""), headers.get(HMAC_TIMESTAMP, "")
    if not secret:
        raise Rejected("no_secret")
    if not signature or not stamp:
        raise Rejected("signature")
    expected = hmac_signature(secret=secret, body=body, timestamp=stamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Rejected("signature")
    if not _fresh(_timestamp(stamp, unit=1), now):
        raise Rejected("stale")


def verify_salesforce_token(*, secret: str, token: str) -> None:
    if not secret:
        raise Rejected("no_secret")
    if not hmac.compare_digest(secret.encode(), token.encode()):
        raise Rejected("token")


def verify_salesforce_org(*, configured: str, received: str) -> None:
    """Compare org ids on their case-sensitive 15-character form (an 18-character id adds a checksum)."""
    if not configured:
        raise Rejected("no_org_id")
    if not hmac.compare_digest(configured[:15].encode(), received[:15].encode()):
        raise Rejected("org_id")


# --- parsing -----------------------------------------------------------------------------------------------
def parse_hubspot(body: bytes) -> list[Event]:
    """A JSON list of events; `subscriptionType` is `<object>.<change>`, e.g. `contact.propertyChange`."""
    try:
        data = json.loads(body)
    except ValueError:
        raise Malformed("not JSON") from None
    if not isinstance(data, list) or len(data) > MAX_EVENTS:
        raise Malformed("not a list of at most 100 events")
    events = []
    for item in data:
        if not isinstance(item, dict) or "eventId" not in item or "objectId" not in item:
            raise Malformed("an event lacks eventId or objectId")
        kind = str(item.get("subscriptionType") or "")
        events.append(
            Event(
                id=str(item["eventId"]),
                vendor_object=kind.split(".", 1)[0],
                object_id=str(item["objectId"])[:255],
            )
        )
    return events


def _xml(body: bytes) -> Any:
    """Parse untrusted XML: no DTD, no entities, no network, no huge trees."""
    parser = etree.XMLParser(
        resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False, remove_comments=True
    )
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError:
        raise Malformed("not XML") from None
    if root.getroottree().docinfo.doctype:
        raise Malformed("a DTD is not allowed")
    return root


def parse_salesforce(body: bytes) -> tuple[str, list[Event]]:
    """An Outbound Message: OrganizationId and ≤ 100 Notification elements (Id, sObject with its type)."""
    root = _xml(body)
    found = root.find(f"{{{SOAP_ENV}}}Body/{{{SF_OUTBOUND}}}notifications")
    if found is None:
        raise Malformed("no notifications element")
    org_id = (found.findtext(f"{{{SF_OUTBOUND}}}OrganizationId") or "").strip()
    notifications = found.findall(f"{{{SF_OUTBOUND}}}Notification")
    if not org_id or not notifications or len(notifications) > MAX_EVENTS:
        raise Malformed("no organization id, or not 1-100 notifications")
    events = []
    for item in notifications:
        note_id = (item.findtext(f"{{{SF_OUTBOUND}}}Id") or "").strip()
        sobject = item.find(f"{{{SF_OUTBOUND}}}sObject")
        if not note_id or sobject is None:
            raise Malformed("a notification lacks its Id or sObject")
        sobject_type = str(sobject.get(f"{{{XSI}}}type") or "").rsplit(":", 1)[-1]
        object_id = (sobject.findtext(f"{{{SF_SOBJECT}}}Id") or "").strip()[:255]
        events.append(Event(id=note_id, vendor_object=sobject_type, object_id=object_id))
    return org_id, events


def parse_servicenow(body: bytes) -> list[Event]:
    """The hub's format: one object or a list of ≤ 100, each `{"id": unique event id, "table": name}` and,
    optionally, `"sys_id"`: the changed record's (an incident's, for its handoff)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise Malformed("not JSON") from None
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > MAX_EVENTS:
        raise Malformed("not 1-100 events")
    events = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id") or not item.get("table"):
            raise Malformed("an event lacks id or table")
        sys_id = item.get("sys_id")
        events.append(
            Event(
                id=str(item["id"]),
                vendor_object=str(item["table"]),
                object_id=str(sys_id)[:255] if isinstance(sys_id, str | int) else "",
            )
        )
    return events


# --- rejection ---------------------------------------------------------------------------------------------
def webhook_reject(*, reason: str, connection: Connection | None, request: HttpRequest | None = None) -> None:
    """Count a refused delivery per connection (or under "unknown") and reason; audit one a minute.

    Counting by connection only once the connection is known keeps random URLs from creating keys.
    Call inside the connection's tenant context when there is a connection.
    """
    client = redis_client()
    now = timezone.now()
    owner = owner_key(connection) if connection is not None else "unknown"
    key = rejection_key(owner=owner, day=day_key(now))
    try:
        pipe = client.pipeline()
        pipe.hincrby(key, reason, 1)
        pipe.expire(key, (REJECTION_DAYS + 1) * 86_400)
        pipe.execute()
        first_this_minute = bool(client.set(f"{key_prefix()}:audited:{owner}", 1, nx=True, ex=60))
    except RedisError:
        # Without Redis the counters miss a few refusals; the audit throttle fails closed (no audit flood).
        logger.warning("webhook rejection not counted: Redis is unavailable")
        return
    if connection is None:
        return
    if first_this_minute:
        audit_record(
            "webhook.rejected",
            tenant=current_tenant(),
            request=request,
            target=connection,
            changes={"vendor": connection.kind, "reason": reason},
            outcome=Outcome.DENIED,
        )


# --- acceptance --------------------------------------------------------------------------------------------
def _stream_map(connection: Connection) -> dict[str, str]:
    """The connection's readable streams by the vendor's object type (lower case, plural and singular)."""
    try:
        connector = connector_class(connection.kind)(connection.connector_config(), session=HttpSession())
    except ConnectorError:
        # A misconfigured connection cannot sync anyway; the next good run reads from the cursor, so
        # nothing a notification announced is lost by ignoring it.
        logger.warning("webhook for connection %s ignored: its configuration is invalid", connection.pk)
        return {}
    by_object: dict[str, str] = {}
    for stream in connector.streams():
        if not stream.readable:
            continue
        name = stream.vendor_object.lower()
        by_object[name] = stream.name
        # HubSpot names object types in the singular in subscription types (contact, company, ticket).
        by_object[name[:-3] + "y" if name.endswith("ies") else name.removesuffix("s")] = stream.name
    return by_object


def streams_for(connection: Connection, events: Iterable[Event]) -> list[str]:
    """Map the events' object types to the connection's streams; unknown types are ignored."""
    by_object = _stream_map(connection)
    found = {by_object[e.vendor_object.lower()] for e in events if e.vendor_object.lower() in by_object}
    return sorted(found)


def tickets_named(connection: Connection, events: Iterable[Event]) -> list[str]:
    """The vendor ids of the tickets the events name (objects of the connection's "tickets" stream)."""
    by_object = _stream_map(connection)
    found = {
        e.object_id
        for e in events
        if e.object_id and by_object.get(e.vendor_object.lower()) == TICKETS_STREAM
    }
    return sorted(found)


def _claim_new(connection: Connection, events: list[Event]) -> tuple[list[Event], list[str]]:
    """Mark event ids as seen (SET NX with a TTL); return the events not seen before and their keys."""
    client = redis_client()
    keys = [f"{key_prefix()}:seen:{owner_key(connection)}:{event.id}" for event in events]
    pipe = client.pipeline()
    for key in keys:
        pipe.set(key, 1, nx=True, ex=DEDUPE_TTL_SECONDS)
    try:
        claimed = pipe.execute()
    except RedisError:
        # Without Redis every event counts as new: a redelivered one costs at most a sync that the queued-run
        # check below coalesces, while dropping one could lose a change.
        logger.warning("webhook de-duplication skipped: Redis is unavailable")
        return list(events), []
    new = [(event, key) for event, key, won in zip(events, keys, claimed, strict=True) if won]
    return [event for event, _key in new], [key for _event, key in new]


def webhook_sync_request(*, connection: Connection, stream: str) -> bool:
    """Queue an incremental sync of `stream` unless one is already queued (which covers this change).

    A run that is queued has not read yet, so it will see the change; a running one may have read past
    it, so it does not count. The queued run is the durable record of the notification: it commits before
    the answer, and its task is published after the commit, or again by the sweep if the broker was away.
    A transaction-scoped advisory lock makes check-and-queue atomic across processes. Paused streams are
    left alone (a pause stops automatic syncs). Return whether it queued.
    """
    tenant = current_tenant()
    key = lock_key(tenant_id=tenant.id, connection_id=connection.pk, stream=f"webhook:{stream}")
    with transaction.atomic(using=tenant.db_alias):
        sql.advisory_xact_lock(using=tenant.db_alias, key=key)
        if StreamState.objects.filter(connection=connection, stream=stream, paused=True).exists():
            return False
        pending = SyncRun.objects.filter(
            connection=connection,
            stream=stream,
            status=RunStatus.QUEUED,
            created_at__gte=timezone.now() - COALESCE_WINDOW,
        )
        if pending.exists():
            return False
        sync_request(connection=connection, stream=stream, trigger="webhook")
    return True


def webhook_accept(*, connection: Connection, events: list[Event]) -> Accepted:
    """De-duplicate verified events and queue one targeted sync per affected stream.

    If queueing fails, the ids are forgotten again so the vendor's redelivery is processed.
    Call inside the connection's tenant context.
    """
    new, keys = _claim_new(connection, events)
    queued: list[str] = []
    try:
        for stream in streams_for(connection, new):
            if webhook_sync_request(connection=connection, stream=stream):
                queued.append(stream)
    except BaseException:
        if keys:
            with contextlib.suppress(RedisError):
                redis_client().delete(*keys)
        raise
    _tickets_announce(connection, new)
    return Accepted(events=len(events), new=len(new), queued=queued)


def _tickets_announce(connection: Connection, events: list[Event]) -> None:
    """Tell the handoff (chat, through integrations/signals.py) which tickets changed, so an agent's comment
    reaches the customer now rather than at the next poll. A failing receiver costs that speed, not the
    delivery: the poll still finds the comment."""
    ticket_ids = tickets_named(connection, events)
    if not ticket_ids:
        return
    for receiver, result in ticket_activity.send_robust(
        sender=Connection, connection=connection, ticket_ids=ticket_ids
    ):
        if isinstance(result, Exception):
            logger.warning("ticket_activity receiver %s failed: %s", receiver, type(result).__name__)


def verify_and_parse(
    *,
    vendor: Vendor,
    connection: Connection,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    token: str = "",
) -> list[Event]:
    """Check a delivery's authenticity for its vendor and return its events (Rejected / Malformed)."""
    now = datetime.now(UTC)
    secret = signing_secret(connection)
    if vendor == "hubspot":
        verify_hubspot(secret=secret, method=method, uri=uri, body=body, headers=headers, now=now)
        return parse_hubspot(body)
    if vendor == "servicenow":
        verify_hmac(secret=secret, body=body, headers=headers, now=now)
        return parse_servicenow(body)
    verify_salesforce_token(secret=secret, token=token)
    try:
        org_id, events = parse_salesforce(body)
    except Malformed:
        raise Rejected("malformed") from None  # without a readable org id the message is not authentic
    verify_salesforce_org(configured=str(connection.settings.get("webhook_org_id") or ""), received=org_id)
    return events


def now_ms() -> int:
    """The current time as HubSpot writes it (ms since the epoch); for tests and tools that sign."""
    return int(time.time() * 1000)
