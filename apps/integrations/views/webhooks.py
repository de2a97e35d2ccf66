"""Public webhook endpoints (no session, no CSRF: the vendor authenticates each delivery instead).

Thin: rate-limit, read a bounded body, find the connection, let webhooks.py verify and accept. Every
refusal of authenticity is the same bare 401, so a prober never learns which check failed.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.core.context import tenant_context
from apps.integrations.selectors.webhooks import owner_key, webhook_connection_find
from apps.integrations.services import webhooks
from apps.observability.access import client_address

logger = logging.getLogger(__name__)

#: Seconds a vendor is asked to wait when the hub cannot store a delivery (HubSpot and Salesforce retry).
UNAVAILABLE_RETRY_AFTER = 30


def _read_body(request: HttpRequest) -> bytes | None:
    """The body, or None when it is larger than webhooks.MAX_BODY_BYTES (never read past the limit)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > webhooks.MAX_BODY_BYTES:
        return None
    body = request.read(webhooks.MAX_BODY_BYTES + 1)
    return None if len(body) > webhooks.MAX_BODY_BYTES else body


def _too_many(wait: float) -> HttpResponse:
    response = HttpResponse(status=429)
    response["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _unauthorized() -> HttpResponse:
    return HttpResponse(status=401)


def _unavailable() -> HttpResponse:
    """The database is away: nothing was stored, so ask the vendor to send the delivery again."""
    response = HttpResponse(status=503)
    response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    return response


def _ingest(
    request: HttpRequest, *, vendor: webhooks.Vendor, connection_id: Any, token: str = ""
) -> HttpResponse:
    """Accept a delivery once its queued sync is stored; broker and Redis may be away (services/webhooks)."""
    try:
        return _ingest_stored(request, vendor=vendor, connection_id=connection_id, token=token)
    except DatabaseError:
        logger.warning("webhook refused with 503: the database is unavailable (%s)", vendor)
        return _unavailable()


def _ingest_stored(
    request: HttpRequest, *, vendor: webhooks.Vendor, connection_id: Any, token: str = ""
) -> HttpResponse:
    ip = client_address(request.META)  # behind the ingress, each sender still gets its own bucket
    if wait := webhooks.throttle_wait(scope=f"ip:{ip}", config=webhooks.IP_RATE):
        return _too_many(wait)
    found = webhook_connection_find(connection_id=connection_id)
    if found is None:
        webhooks.webhook_reject(reason="unknown_connection", connection=None)
        return _unauthorized()
    tenant, connection = found
    with tenant_context(tenant):
        reason = "wrong_vendor" if connection.kind != vendor else "disabled" if not connection.enabled else ""
        if reason:
            webhooks.webhook_reject(reason=reason, connection=connection, request=request)
            return _unauthorized()
        owner = owner_key(connection)
        if wait := webhooks.throttle_wait(scope=f"connection:{owner}", config=webhooks.CONNECTION_RATE):
            return _too_many(wait)
        body = _read_body(request)
        if body is None:
            webhooks.webhook_reject(reason="too_large", connection=connection, request=request)
            return HttpResponse(status=413)
        try:
            events = webhooks.verify_and_parse(
                vendor=vendor,
                connection=connection,
                method=request.method or "POST",
                uri=request.build_absolute_uri(),
                body=body,
                headers=request.headers,
                token=token,
            )
        except webhooks.Rejected as exc:
            logger.info("webhook refused: %s connection %s (%s)", vendor, connection.pk, exc.reason)
            webhooks.webhook_reject(reason=exc.reason, connection=connection, request=request)
            return _unauthorized()
        except webhooks.Malformed as exc:
            logger.info("webhook unreadable: %s connection %s (%s)", vendor, connection.pk, exc)
            return HttpResponse(status=400)
        accepted = webhooks.webhook_accept(connection=connection, events=events)
        logger.info(
            "webhook accepted: %s connection %s, %d events, %d new, queued %s",
            vendor,
            connection.pk,
            accepted.events,
            accepted.new,
            ",".join(accepted.queued) or "-",
        )
    if vendor == "salesforce":
        return HttpResponse(webhooks.SALESFORCE_ACK, content_type="text/xml; charset=utf-8")
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def hubspot_webhook_view(request: HttpRequest, connection_id: Any) -> HttpResponse:
    return _ingest(request, vendor="hubspot", connection_id=connection_id)


@csrf_exempt
@require_POST
def salesforce_webhook_view(request: HttpRequest, connection_id: Any, token: str) -> HttpResponse:
    return _ingest(request, vendor="salesforce", connection_id=connection_id, token=token)


@csrf_exempt
@require_POST
def servicenow_webhook_view(request: HttpRequest, connection_id: Any) -> HttpResponse:
    return _ingest(request, vendor="servicenow", connection_id=connection_id)
