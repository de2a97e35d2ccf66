"""The chat API's reads of later messages (issue 18): `GET .../messages?after=` and the event stream.

An agent's reply during a handoff, the bot's "back with the assistant" and a CSAT question arrive after the
turn that caused them: a channel without push polls `?after=<last id>` or keeps `GET .../events` open (Server-
Sent Events, resumable with Last-Event-ID, bounded and capped like the web widget's stream). Same API key,
tenant and channel checks as the other conversation endpoints: another channel's conversation is a 404.
"""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.chat.api import conversation_serializers as s
from apps.chat.api import streams
from apps.chat.api.conversations import ChatView, EventStreamRenderer, MessageCreateView, _errors
from apps.chat.auth import principal_of
from apps.chat.models import Message
from apps.chat.services import conversations as svc
from apps.chat.services import widget
from apps.core.params import bounded_int

#: The largest page of `?after=` (and its default).
PAGE_MAX = 100
PAGE_DEFAULT = 50
_MAX_ID = 2**63 - 1

AFTER = OpenApiParameter(
    "after",
    {"type": "integer", "minimum": 0},
    OpenApiParameter.QUERY,
    required=False,
    description="Only messages with a larger id (the last id the client has; 0 or absent: from the start).",
)
LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
    OpenApiParameter.QUERY,
    required=False,
    description=f"At most this many (1-{PAGE_MAX}).",
)
LAST_EVENT_ID = OpenApiParameter(
    "Last-Event-ID",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Resume after this message id (browsers send it on reconnection); `?after=` does the same.",
)
_EVENTS_SCHEMA = {
    "type": "object",
    "description": "Server-Sent Events: `message` (id: the message id; data: a message object like the "
    "`messages` items of `GET .../messages`), comments as heartbeats, and `reconnect` {after} when the "
    "stream's lifetime ends.",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string", "enum": ["message", "reconnect", "error"]},
        "data": {"type": "string"},
    },
    "required": ["event", "data"],
}


class StreamsBusy(APIException):
    status_code = 503
    default_detail = "Too many open streams."
    default_code = "streams_busy"


class MessagesView(MessageCreateView):
    """POST: the user's message (MessageCreateView); GET: the messages after a cursor."""

    def get_renderers(self) -> list[Any]:
        """JSON only for GET: its stream is `.../events`; POST keeps the reply's event stream."""
        request = getattr(self, "request", None)
        if request is not None and request.method == "GET":
            return [JSONRenderer()]
        return super().get_renderers()

    @extend_schema(
        operation_id="message_list",
        tags=["chat"],
        parameters=[AFTER, LIMIT],
        responses={200: s.MessagePageSerializer, **_errors(400, 401, 403, 404, 429)},
        summary="Messages after a cursor (poll for agent replies)",
        description="Oldest first. Keep the last id you have and ask with `after=` it: new messages are "
        "agent replies during a handoff, the bot's notices and your own turns. Texts as stored.",
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = svc.conversation_for(principal=principal_of(request), conversation_id=conversation_id)
        after = bounded_int(request, "after", default=0, minimum=0, maximum=_MAX_ID)
        limit = bounded_int(request, "limit", default=PAGE_DEFAULT, minimum=1, maximum=PAGE_MAX)
        rows = list(
            Message.objects.filter(conversation=conversation, id__gt=after)
            .only("id", "role", "text", "author", "citations", "created_at")
            .order_by("id")[: limit + 1]
        )
        page = rows[:limit]
        data = {
            "messages": [widget.message_event(m) for m in page],
            "next_after": page[-1].id if page else after,
            "has_more": len(rows) > limit,
        }
        return Response(data)


class ConversationEventsView(ChatView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="conversation_events",
        tags=["chat"],
        parameters=[AFTER, LAST_EVENT_ID],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                _EVENTS_SCHEMA, description="The conversation's new messages as they are stored."
            ),
            503: OpenApiResponse(description="This server holds its cap of open streams; see `Retry-After`."),
            **_errors(400, 401, 403, 404, 429),
        },
        summary="Stream the conversation's new messages",
        description="Server-Sent Events. Without Last-Event-ID (or `after`) only messages stored from now "
        "on; with it, first the ones missed. The stream ends after a bounded time with a `reconnect` event: "
        "connect again with Last-Event-ID.",
    )
    def get(self, request: Request, conversation_id: str) -> Any:
        principal = principal_of(request)
        conversation = svc.conversation_for(principal=principal, conversation_id=conversation_id)
        resume = request.headers.get("Last-Event-ID", "").strip()
        if not resume and request.query_params.get("after") not in (None, ""):
            resume = str(bounded_int(request, "after", default=0, minimum=0, maximum=_MAX_ID))
        last_id = streams.last_seen(conversation_id=conversation.pk, resume=resume)
        try:
            body = streams.stream_open(
                tenant=principal.tenant, conversation_id=conversation.pk, last_id=last_id
            )
        except streams.StreamBusy:
            raise StreamsBusy(_("Too many open streams. Please try again shortly.")) from None
        response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if getattr(response, "status_code", 200) == 503 and "Retry-After" not in response:
            response["Retry-After"] = "5"
        return response
