"""The public web widget API under /widget/v1/<channel>/...: what static/widget/widget.js calls from a
customer's site. Plain Django views (not DRF): every answer, errors included, carries the CORS headers its
origin may see.

Authentication: the channel's public widget key (`X-Widget-Key`) and, once a conversation is started, its
conversation token (`X-Widget-Token`). CORS: only the channel's allowed origins, matched exactly; preflights
are answered from the channel id in the path (a preflight carries no key). Rate limits: per widget key and per
visitor (Redis token buckets, apps/chat/ratelimit.py). Push: `GET .../stream` is a bounded Server-Sent Events
stream relaying the conversation's Redis channel (docs/architecture.md, "Web widget push").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from apps.chat.api import streams
from apps.chat.models import Message
from apps.chat.ratelimit import bucket
from apps.chat.services import conversations as chat
from apps.chat.services import widget as svc
from apps.core.context import tenant_context
from apps.core.deadlines import DependencyUnavailable, optional_cache
from apps.core.errors import NotFound, ValidationFailed
from apps.integrations.resilience import acquire_or_fail_open
from apps.observability import metrics

logger = logging.getLogger(__name__)

ALLOW_HEADERS = "Content-Type, X-Widget-Key, X-Widget-Token, Idempotency-Key, Last-Event-ID"
EXPOSE_HEADERS = "Retry-After, Idempotent-Replayed"
_CHUNK_WORDS = 4
_PAGE = 100


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def _origin(request: HttpRequest) -> str:
    return request.headers.get("Origin", "").rstrip("/")


def _cors(response: HttpResponseBase, origin: str, allowed: bool) -> HttpResponseBase:
    response["Vary"] = "Origin"
    if allowed and origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    response["Cache-Control"] = "no-store"
    return response


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(data, status=status, safe=False, json_dumps_params={"ensure_ascii": False})
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _language(request: HttpRequest) -> str:
    """The language of error messages: the widget's UI language (from the browser)."""
    from django.utils.translation.trans_real import get_supported_language_variant, parse_accept_lang_header

    for lang, _q in parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        try:
            return get_supported_language_variant(lang)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def _throttle(keys: list[tuple[str, Any, tuple[int, int]]]) -> None:
    """Charge the visitor's bucket, then the key's (a refused request is not charged further): 429 when
    either is empty. Without Redis the limits fail open for a while, like the chat API's."""
    buckets = [bucket(scope, ident, rate) for scope, ident, rate in keys]
    refused, wait = acquire_or_fail_open(buckets)
    if refused is None:
        return
    scope = keys[buckets.index(refused)][0]
    metrics.record_rate_limit_hit(scope.replace("-", "_"))
    seconds = max(1, int(wait + 0.999)) if wait else 1
    raise Refused(
        429,
        _("Too many requests. Please try again in %(seconds)d seconds.") % {"seconds": seconds},
        {"Retry-After": str(seconds)},
    )


def _client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))


def widget_endpoint(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Answer the preflight, check the body size, the widget key and the origin; map errors to JSON; CORS."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, channel_id: Any, **kwargs: Any) -> HttpResponseBase:
        origin = _origin(request)
        with translation.override(_language(request)):
            if request.method == "OPTIONS":
                return _preflight(origin, channel_id)
            allowed = False
            try:
                length = request.META.get("CONTENT_LENGTH") or "0"
                if length.isdigit() and int(length) > settings.HUB_CHAT_MAX_BODY:
                    raise Refused(413, _("Request body too large."))
                try:
                    widget = svc.widget_channel(
                        channel_id=channel_id, widget_key=request.headers.get("X-Widget-Key", "")
                    )
                except svc.WidgetKeyInvalid:
                    metrics.record_widget_refused("key")
                    raise Refused(401, _("Invalid widget key.")) from None
                except svc.WidgetForbidden as exc:
                    raise Refused(403, str(exc)) from None
                if not origin or origin not in widget.allowed_origins:
                    metrics.record_widget_refused("origin")
                    raise Refused(403, _("This site may not use this widget."))
                allowed = True
                with tenant_context(widget.principal.tenant), optional_cache("cache"):
                    response = view(request, widget, **kwargs)
            except Refused as exc:
                response = _json({"detail": exc.detail}, exc.status, exc.headers)
            except ValidationFailed as exc:
                response = _json({"detail": str(exc), **exc.errors}, 400)
            except NotFound:
                response = _json({"detail": _("Conversation not found.")}, 404)
            except DependencyUnavailable:
                response = _json(
                    {
                        "detail": _("The service is busy. Please try again in %(seconds)d seconds.")
                        % {"seconds": 5}
                    },
                    503,
                    {"Retry-After": "5"},
                )
            return _cors(response, origin, allowed)

    return wrapper


def _preflight(origin: str, channel_id: Any) -> HttpResponseBase:
    if not origin or origin not in svc.channel_origins(channel_id=channel_id):
        metrics.record_widget_refused("origin")
        return _cors(HttpResponse(status=403), origin, False)
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response["Access-Control-Max-Age"] = "600"
    return _cors(response, origin, True)


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, _("The body must be a JSON object.")) from None
    if not isinstance(data, dict):
        raise Refused(400, _("The body must be a JSON object."))
    return data


def _text_field(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise ValidationFailed(_("Invalid input."), {name: [_("Invalid value.")]})
    return value


def _token(request: HttpRequest, widget: svc.WidgetChannel, conversation_id: str) -> svc.WidgetToken:
    return svc.token_check(
        principal=widget.principal,
        token=request.headers.get("X-Widget-Token", ""),
        conversation_id=conversation_id,
    )


# --- views ------------------------------------------------------------------------------------------------
@widget_endpoint
def conversation_start_view(request: HttpRequest, widget: svc.WidgetChannel) -> HttpResponse:
    if request.method != "POST":
        raise Refused(405, _("Method not allowed."))
    key_rate = settings.HUB_WIDGET_RATE_PER_KEY
    _throttle(
        [
            ("widget-visitor", f"ip:{_client_ip(request)}", settings.HUB_WIDGET_RATE_PER_VISITOR),
            ("widget-key", widget.principal.channel.id, key_rate),
        ]
    )
    data = _body(request)
    locales = data.get("locales") or []
    if not isinstance(locales, list) or not all(isinstance(x, str) for x in locales):
        raise ValidationFailed(_("Invalid input."), {"locales": [_("Invalid value.")]})
    started = svc.widget_conversation_start(
        widget=widget,
        browser_locales=locales[:10],
        user_id=_text_field(data, "user_id", 200),
        user_hash=_text_field(data, "user_hash", 200),
        identity_token=_text_field(data, "identity_token", 4096),
    )
    conversation = started.conversation
    return _json(
        {
            "conversation_id": str(conversation.pk),
            "token": started.token,
            "locale": conversation.locale,
            "expires_in": settings.HUB_WIDGET_TOKEN_MAX_AGE,
            "identity_verified": bool(conversation.identity_verified),
        },
        201,
    )


def _reply_stream(turn: chat.Turn) -> Iterator[str]:
    """The reply in chunks once produced (the turn returns the whole text), then its citations, then done."""
    yield _event("start", {"conversation_id": turn.conversation_id, "message_id": turn.message_id})
    # A handed-off conversation's turn has no text (reply.text null): the agents answer later, by push.
    words = turn.reply["text"].split(" ") if turn.reply["text"] else []
    for i in range(0, len(words), _CHUNK_WORDS):
        piece = " ".join(words[i : i + _CHUNK_WORDS])
        yield _event("delta", {"text": piece if i == 0 else " " + piece})
    yield _event("citations", {"citations": turn.reply["citations"]})
    yield _event("done", {"message_id": turn.message_id, **turn.reply})


def _event(name: str, data: Any, event_id: Any = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


@widget_endpoint
def messages_view(request: HttpRequest, widget: svc.WidgetChannel, conversation_id: str) -> HttpResponseBase:
    """POST: the visitor's message, answered by the chat API's turn; GET `?after=<id>`: later messages."""
    token = _token(request, widget, conversation_id)
    _throttle(
        [
            ("widget-visitor", token.visitor, settings.HUB_WIDGET_RATE_PER_VISITOR),
            ("widget-key", widget.principal.channel.id, settings.HUB_WIDGET_RATE_PER_KEY),
        ]
    )
    principal = widget.principal
    if request.method == "GET":
        conversation = chat.conversation_for(principal=principal, conversation_id=conversation_id)
        after = request.GET.get("after", "0")
        if not after.isdigit() or len(after) > 18:
            raise ValidationFailed(_("Invalid input."), {"after": [_("Invalid value.")]})
        rows = Message.objects.filter(conversation=conversation, id__gt=int(after)).order_by("id")[:_PAGE]
        return _json({"messages": [svc.message_event(m) for m in rows]})
    if request.method != "POST":
        raise Refused(405, _("Method not allowed."))
    idempotency_key = request.headers.get("Idempotency-Key", "").strip()
    start = chat.turn_start(
        principal=principal, conversation_id=conversation_id, idempotency_key=idempotency_key
    )
    text = _text_field(_body(request), "text", settings.HUB_CHAT_MAX_TEXT + 1)
    turn = chat.message_post(
        principal=principal,
        conversation=start.conversation,
        text=text,
        idempotency_key=idempotency_key,
        start=start,
    )
    if not turn.replayed and turn.reply["text"] is not None:
        # The visitor's other tabs see the reply too (the widget drops what it has).
        svc.message_publish(
            conversation_id=conversation_id,
            event={
                "id": turn.message_id,
                "role": "assistant",
                "text": turn.reply["text"],
                "citations": turn.reply["citations"],
            },
        )
    headers = {"Idempotent-Replayed": "true"} if turn.replayed else {}
    if "text/event-stream" in request.headers.get("Accept", ""):
        response = StreamingHttpResponse(_reply_stream(turn), content_type="text/event-stream; charset=utf-8")
        response["X-Accel-Buffering"] = "no"
        for name, value in headers.items():
            response[name] = value
        return response
    return _json({"message_id": turn.message_id, "reply": turn.reply}, 200, headers)


@widget_endpoint
def stream_view(request: HttpRequest, widget: svc.WidgetChannel, conversation_id: str) -> HttpResponseBase:
    """Server-Sent Events of the conversation's new messages for HUB_WIDGET_STREAM_SECONDS, then the widget
    reconnects with Last-Event-ID and first gets what it missed from the database (apps/chat/api/streams.py,
    shared with the chat API's event stream)."""
    if request.method != "GET":
        raise Refused(405, _("Method not allowed."))
    token = _token(request, widget, conversation_id)
    _throttle(
        [
            ("widget-visitor", token.visitor, settings.HUB_WIDGET_RATE_PER_VISITOR),
            ("widget-key", widget.principal.channel.id, settings.HUB_WIDGET_RATE_PER_KEY),
        ]
    )
    conversation = chat.conversation_for(principal=widget.principal, conversation_id=conversation_id)
    resume = request.headers.get("Last-Event-ID", "") or request.GET.get("after", "")
    last_id = streams.last_seen(conversation_id=conversation.pk, resume=resume)
    try:
        body = streams.stream_open(
            tenant=widget.principal.tenant, conversation_id=conversation.pk, last_id=last_id
        )
    except streams.StreamBusy:
        metrics.record_widget_refused("stream_limit")
        raise Refused(
            503, _("Too many open streams. Please try again shortly."), {"Retry-After": "5"}
        ) from None
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["X-Accel-Buffering"] = "no"
    return response
