"""Reads of conversations for the console: filtered lists and one transcript (no N+1)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet

from apps.chat.models import Channel, Conversation, Feedback, LlmProviderConfig, Message
from apps.core.errors import NotFound


def conversation_list(
    *, channel_id: Any = None, status: str = "", intent: str = ""
) -> QuerySet[Conversation]:
    qs = Conversation.objects.all()
    if channel_id:
        qs = qs.filter(channel_id=channel_id)
    if status:
        qs = qs.filter(status=status)
    if intent:
        qs = qs.filter(last_intent=intent)
    return qs.order_by("-created_at")


def conversation_get(*, pk: Any) -> Conversation:
    try:
        key = uuid.UUID(str(pk))
    except ValueError:
        raise NotFound("conversation not found") from None
    conversation = Conversation.objects.filter(pk=key).first()
    if conversation is None:
        raise NotFound("conversation not found")
    return conversation


def transcript(*, conversation: Conversation) -> dict[str, Any]:
    """The messages, the feedback and a summary of one conversation (three queries)."""
    messages = list(Message.objects.filter(conversation=conversation).order_by("id"))
    feedback = list(Feedback.objects.filter(conversation=conversation).order_by("created_at"))
    summary = Message.objects.filter(conversation=conversation, role="assistant").aggregate(
        replies=Count("pk"),
        fallbacks=Count("pk", filter=Q(outcome="fallback")),
        avg_latency_ms=Avg("latency_ms"),
    )
    return {"messages": messages, "feedback": feedback, "summary": summary}


def channel_names(*, tenant: Any) -> dict[str, str]:
    """Channel id (as text) → name, for labelling region rows that keep only the id."""
    return {str(pk): name for pk, name in Channel.objects.filter(tenant=tenant).values_list("pk", "name")}


def llm_provider_list() -> QuerySet[LlmProviderConfig]:
    return LlmProviderConfig.objects.order_by("name")


def llm_provider_get(*, pk: Any) -> LlmProviderConfig:
    try:
        key = uuid.UUID(str(pk))
    except ValueError:
        raise NotFound("provider not found") from None
    config = LlmProviderConfig.objects.filter(pk=key).first()
    if config is None:
        raise NotFound("provider not found")
    return config
