"""The channel-facing chat API: conversations, messages (JSON or Server-Sent Events), feedback, handoff.

Views stay thin: authenticate the channel's key (which also enters the tenant context), validate, call a
service, serialize. Nothing is kept between requests in the process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.chat.api import conversation_serializers as s
from apps.chat.auth import ApiKeyAuthentication, HasChatScope, HasTranscriptScope, principal_of
from apps.chat.models import Message
from apps.chat.ratelimit import chat_throttles
from apps.chat.services import conversations as svc
from apps.chat.services import handoff as handoff_svc
from apps.core.deadlines import optional_cache

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Repeat a POST with the same key to get the first result, never a second answer or action.",
)
_SSE_CHUNK_WORDS = 8
_SSE_EVENT_SCHEMA = {
    "type": "object",
    "description": "One Server-Sent Event of a streamed reply (`event:` and `data:` lines).",
    "properties": {
        "event": {"type": "string", "enum": ["start", "delta", "done", "error"]},
        "data": {
            "type": "string",
            "description": "JSON: `start` {conversation_id, message_id}; `delta` {text}; `done` the Turn "
            "object; `error` the error body.",
        },
    },
    "required": ["event", "data"],
}
_ERROR_RESPONSES: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(description="Invalid input: field errors, or `Unknown field.` for extra fields."),
    401: OpenApiResponse(description="No API key, or the key is unknown, malformed, revoked or expired."),
    403: OpenApiResponse(description="The key lacks the scope, or its channel or tenant is disabled."),
    404: OpenApiResponse(description="No such conversation for this channel."),
    413: OpenApiResponse(description="The request body is larger than the API accepts."),
    429: OpenApiResponse(description="Rate limit of the key or the tenant reached; see `Retry-After`."),
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error answers (the body is `{"detail": ...}` or field errors, described, not typed)."""
    return {code: _ERROR_RESPONSES[code] for code in codes}


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("Request body too large.")
    default_code = "payload_too_large"


class EventStreamRenderer(BaseRenderer):
    """Lets clients ask for `text/event-stream`; errors then arrive as one `error` event."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return _event("error", data).encode()


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


def _stream(turn: svc.Turn) -> Iterator[str]:
    yield _event("start", {"conversation_id": turn.conversation_id, "message_id": turn.message_id})
    words = (turn.reply["text"] or "").split(" ") if turn.reply["text"] else []
    for i in range(0, len(words), _SSE_CHUNK_WORDS):
        piece = " ".join(words[i : i + _SSE_CHUNK_WORDS])
        yield _event("delta", {"text": piece if i == 0 else " " + piece})
    yield _event("done", s.turn_data(turn))


class ChatView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasChatScope]
    parser_classes = [JSONParser]  # channels send JSON; form encodings cannot carry `metadata` faithfully
    renderer_classes = [JSONRenderer]

    def get_throttles(self) -> list[Any]:
        return chat_throttles()

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Without Redis the chat API reads through its caches (policy flags, provider choice, answers) to the
        # database instead of failing (issue 15, docs/operations.md); invalidations still need Redis.
        with optional_cache("cache"):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > settings.HUB_CHAT_MAX_BODY:
            raise PayloadTooLarge(
                _("Request body too large: at most %(max)d bytes.") % {"max": settings.HUB_CHAT_MAX_BODY}
            )
        super().initial(request, *args, **kwargs)


class ConversationCreateView(ChatView):
    @extend_schema(
        operation_id="conversation_create",
        tags=["chat"],
        request=s.ConversationCreateSerializer,
        responses={201: s.ConversationSerializer, **_errors(400, 401, 403, 413, 429)},
        summary="Start a conversation",
        description="With `user_hash` or `identity_token` (per the channel's identity mode) the user is "
        "verified: only then, and only for their own records, does the bot reveal or change customer data "
        "(order status). An invalid proof is a 400 (`The identity proof is not valid.`, never which part "
        "failed); without a proof the conversation is anonymous.",
    )
    def post(self, request: Request) -> Response:
        data = s.ConversationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = svc.conversation_start(principal=principal_of(request), **data.validated_data)
        return Response(s.ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailView(ChatView):
    permission_classes = [HasTranscriptScope]

    @extend_schema(
        operation_id="conversation_get",
        tags=["chat"],
        responses={200: s.TranscriptSerializer, **_errors(401, 403, 404, 429)},
        summary="A conversation and its transcript",
        description="Needs a key with the `transcripts` scope. Texts as stored: redacted when the tenant's "
        "data policy redacts transcripts.",
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = svc.conversation_for(principal=principal_of(request), conversation_id=conversation_id)
        messages = list(Message.objects.filter(conversation=conversation).order_by("id"))
        data = s.ConversationSerializer(conversation).data
        data["messages"] = s.TranscriptMessageSerializer(messages, many=True).data
        return Response(data)


class MessageCreateView(ChatView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="message_create",
        tags=["chat"],
        request=s.MessageCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            (200, "application/json"): OpenApiResponse(
                s.TurnSerializer,
                description="The reply. With `Accept: text/event-stream` it arrives as Server-Sent Events: "
                "`start`, then `delta` events with text, then `done` with this same object.",
            ),
            (200, "text/event-stream"): OpenApiResponse(
                _SSE_EVENT_SCHEMA, description="One Server-Sent Event of the reply stream."
            ),
            **_errors(400, 401, 403, 404, 413, 429),
        },
        summary="Send the user's message and get the reply",
    )
    def post(self, request: Request, conversation_id: str) -> Any:
        principal = principal_of(request)
        idempotency_key = request.headers.get("Idempotency-Key", "").strip()
        start = svc.turn_start(
            principal=principal, conversation_id=conversation_id, idempotency_key=idempotency_key
        )
        data = s.MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        turn = svc.message_post(
            principal=principal,
            conversation=start.conversation,
            text=data.validated_data["text"],
            idempotency_key=idempotency_key,
            start=start,
        )
        headers = {"Idempotent-Replayed": "true"} if turn.replayed else {}
        if isinstance(request.accepted_renderer, EventStreamRenderer):
            response = StreamingHttpResponse(_stream(turn), content_type="text/event-stream; charset=utf-8")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
            for name, value in headers.items():
                response[name] = value
            return response
        return Response(s.turn_data(turn), headers=headers)


class FeedbackCreateView(ChatView):
    @extend_schema(
        operation_id="feedback_create",
        tags=["chat"],
        request=s.FeedbackCreateSerializer,
        responses={201: s.FeedbackSerializer, **_errors(400, 401, 403, 404, 413, 429)},
        summary="Rate the conversation or one reply",
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        principal = principal_of(request)
        conversation = svc.conversation_for(principal=principal, conversation_id=conversation_id)
        data = s.FeedbackCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feedback = svc.feedback_add(principal=principal, conversation=conversation, **data.validated_data)
        return Response(s.FeedbackSerializer(feedback).data, status=status.HTTP_201_CREATED)


class CsatCreateView(ChatView):
    @extend_schema(
        operation_id="csat_create",
        tags=["chat"],
        request=s.CsatCreateSerializer,
        responses={
            200: OpenApiResponse(s.CsatSerializer, description="The rating replaced an earlier one."),
            201: s.CsatSerializer,
            409: OpenApiResponse(description="No finished handoff of this conversation asked for a rating."),
            **_errors(400, 401, 403, 404, 413, 429),
        },
        summary="Rate the help of the people a conversation was handed to (CSAT)",
        description="After a handoff ends the bot asks for a 1-5 rating; the widget and channels send it "
        "here (or the user types it as the next message). One rating per handoff: sending again replaces it.",
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        principal = principal_of(request)
        conversation = svc.conversation_for(principal=principal, conversation_id=conversation_id)
        data = s.CsatCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feedback, created = handoff_svc.csat_submit(
            conversation=conversation,
            rating=data.validated_data["rating"],
            comment=data.validated_data["comment"],
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.CsatSerializer(feedback).data, status=code)


class IdentifyView(ChatView):
    @extend_schema(
        operation_id="conversation_identify",
        tags=["chat"],
        request=s.IdentifySerializer,
        responses={200: s.ConversationSerializer, **_errors(400, 401, 403, 404, 413, 429)},
        summary="Prove the user's identity mid-conversation",
        description="The user signed in after the conversation started: the same proofs as when starting "
        "one (`user_ref` + `user_hash`, or `identity_token`). A valid proof replaces any earlier identity; "
        "an invalid one is a 400 and changes nothing.",
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        principal = principal_of(request)
        conversation = svc.conversation_for(principal=principal, conversation_id=conversation_id)
        data = s.IdentifySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = svc.conversation_identify(
            principal=principal, conversation=conversation, **data.validated_data
        )
        return Response(s.ConversationSerializer(conversation).data)


class HandoffCreateView(ChatView):
    @extend_schema(
        operation_id="handoff_create",
        tags=["chat"],
        request=s.HandoffCreateSerializer,
        responses={200: s.TurnSerializer, **_errors(400, 401, 403, 404, 413, 429)},
        summary="Ask for a human",
        description="Opens a ticket with the transcript, detected intent, channel and locale.",
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        principal = principal_of(request)
        conversation = svc.conversation_for(principal=principal, conversation_id=conversation_id)
        data = s.HandoffCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        turn = svc.handoff_request(
            principal=principal, conversation=conversation, reason=data.validated_data["reason"]
        )
        return Response(s.turn_data(turn))
