"""The messaging platforms' webhook: `/hooks/channels/<channel id>/` (no session, no CSRF: signed instead).

Thin, like the vendor webhooks (apps/integrations/views/webhooks.py): rate-limit per address and per channel
(Redis token buckets that fail open), refuse a body over MAX_WEBHOOK_BYTES before reading it, let the
channel's adapter verify and parse, then store (services/channel_inbound.py). A refused request writes
nothing to the database; every refusal is counted (hub_channel_webhooks_refused_total{kind, reason}).

Answers: an unknown, disabled or unconfigured channel is 404 (a channel id is a random UUID: telling
"no such channel" from "bad signature" reveals nothing guessable, and a platform's console shows the 404 to
the operator who pasted a wrong URL); a refused signature 401; Teams' signing keys unreachable 503 with
Retry-After; an unreadable event 400; too large 413; a stored (or ignored, or duplicate) event 200 or the
platform's expected answer (Slack's challenge, Twilio's empty TwiML). The database away: 503 + Retry-After,
so the platform delivers again.

The URL an adapter verifies (Twilio signs it) is the one the platform called: built from the request with
Django's proxy settings — behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER (HUB_TRUSTED_PROXY_*)
and, when the proxy rewrites the host, USE_X_FORWARDED_HOST (docs/deploy.md).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.chat.selectors.channel_inbound import channel_endpoint_find
from apps.chat.services import channel_inbound as svc
from apps.core.context import tenant_context
from apps.integrations.services.webhooks import webhook_reject
from apps.observability import metrics
from apps.observability.access import client_address
from connectors.errors import ConnectorError, VendorUnavailable
from connectors.messaging import MAX_WEBHOOK_BYTES, Answer, PayloadInvalid, SignatureInvalid

logger = logging.getLogger(__name__)

#: Seconds a platform is asked to wait when the hub cannot store (or verify) a delivery now.
UNAVAILABLE_RETRY_AFTER = 30


def _retry_later(status: int, seconds: float) -> HttpResponse:
    response = HttpResponse(status=status)
    response["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def _read_body(request: HttpRequest) -> bytes | None:
    """The body, or None when it is larger than MAX_WEBHOOK_BYTES (never read past the limit)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_WEBHOOK_BYTES:
        return None
    body = request.read(MAX_WEBHOOK_BYTES + 1)
    return None if len(body) > MAX_WEBHOOK_BYTES else body


def _answer(answer: Answer | None) -> HttpResponse:
    if answer is None:
        return HttpResponse(status=200)
    return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)


@csrf_exempt
def channel_webhook_view(request: HttpRequest, channel_id: Any) -> HttpResponse:
    try:
        return _handle(request, channel_id)
    except DatabaseError:
        logger.warning("channel webhook refused with 503: the database is unavailable")
        return _retry_later(503, UNAVAILABLE_RETRY_AFTER)


def _handle(request: HttpRequest, channel_id: Any) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        metrics.record_channel_refused(kind="custom", reason="method")
        return HttpResponse(status=405)
    if wait := svc.throttle_wait(scope=f"ip:{client_address(request.META)}", config=svc.IP_RATE):
        metrics.record_channel_refused(kind="custom", reason="rate_limited")
        return _retry_later(429, wait)
    endpoint = channel_endpoint_find(channel_id=channel_id)
    if endpoint is None:
        metrics.record_channel_refused(kind="custom", reason="unknown_channel")
        return HttpResponse(status=404)
    kind = endpoint.channel.kind
    if wait := svc.throttle_wait(scope=f"channel:{endpoint.channel.id}", config=svc.CHANNEL_RATE):
        metrics.record_channel_refused(kind=kind, reason="rate_limited")
        return _retry_later(429, wait)
    with tenant_context(endpoint.tenant):
        try:
            adapter = svc.channel_adapter(endpoint.connection)
        except ConnectorError:
            logger.warning("channel %s: its platform account's settings are invalid", endpoint.channel.id)
            metrics.record_channel_refused(kind=kind, reason="unknown_channel")
            return HttpResponse(status=404)
        if request.method == "GET":
            answer = adapter.handshake(method="GET", query=request.GET.dict(), headers=request.headers)
            if answer is None:
                return HttpResponse(status=405)
            if answer.status >= 400:
                metrics.record_channel_refused(kind=kind, reason="handshake")
            return _answer(answer)
        body = _read_body(request)
        if body is None:
            metrics.record_channel_refused(kind=kind, reason="too_large")
            return HttpResponse(status=413)
        try:
            adapter.verify(
                url=request.build_absolute_uri(), headers=request.headers, body=body, now=time.time()
            )
        except SignatureInvalid as exc:
            logger.info("channel %s: webhook refused (%s)", endpoint.channel.id, exc.reason)
            metrics.record_channel_refused(kind=kind, reason=exc.reason)
            # Per account and day in Redis for the console, audited at most once a minute (like vendor hooks).
            webhook_reject(reason=exc.reason, connection=endpoint.connection, request=request)
            return HttpResponse(status=401)
        except VendorUnavailable as exc:
            # Teams: the signing keys cannot be fetched; the Bot Connector retries on 503.
            logger.warning("channel %s: cannot verify now (%s)", endpoint.channel.id, type(exc).__name__)
            metrics.record_channel_refused(kind=kind, reason="keys_unavailable")
            return _retry_later(503, UNAVAILABLE_RETRY_AFTER)
        try:
            events = adapter.parse(headers=request.headers, body=body)
        except PayloadInvalid:
            metrics.record_channel_refused(kind=kind, reason="malformed")
            return HttpResponse(status=400)
        accepted = svc.channel_events_accept(endpoint=endpoint, events=events)
        logger.info(
            "channel %s: webhook accepted, %d new, %d duplicate, %d status, %d ignored",
            endpoint.channel.id,
            accepted.new,
            accepted.duplicates,
            accepted.statuses,
            accepted.ignored,
        )
    return _answer(events.answer)
