"""The chat's unanswered questions, read by knowledge's learning loop (registered in ChatConfig.ready(), like
retention.py's handlers).

A question counts when its reply fell back for want of knowledge (outcome fallback, intent unknown) or when
the customer rated a knowledge answer down; only channels that answer from the knowledge base are read (a
channel with no knowledge base of its own answers from all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Exists, OuterRef, Q

from apps.chat.models import ANSWER_RATING_DOWN_MAX, Channel, Feedback, FeedbackKind, Message, Outcome, Role
from apps.chat.services import intents
from apps.knowledge.learning import (
    SOURCE_FALLBACK,
    SOURCE_NEGATIVE,
    AskedQuestion,
    QuestionFilter,
)


def _locale_q(languages: Sequence[str]) -> Q:
    """Conversations in one of these languages ("de" matches "de" and "de-AT")."""
    q = Q(pk__in=[])
    for language in languages:
        q |= Q(conversation__locale=language) | Q(conversation__locale__startswith=f"{language}-")
    return q


def unanswered_messages(*, tenant: Any, query: QuestionFilter) -> list[AskedQuestion]:
    """Customer messages about knowledge base `query.kb_id` left unanswered, newest first (two queries)."""
    channel_ids = list(
        Channel.objects.filter(tenant=tenant)
        .filter(Q(knowledge_base_id=query.kb_id) | Q(knowledge_base_id__isnull=True))
        .values_list("pk", flat=True)
    )
    if not channel_ids:
        return []
    fell_back = Q(reply__outcome=Outcome.FALLBACK, reply__intent=intents.UNKNOWN)
    rated_down = Q(reply__intent=intents.KNOWLEDGE, rated_down=True)
    wanted = {SOURCE_FALLBACK: fell_back, SOURCE_NEGATIVE: rated_down}.get(
        query.source, fell_back | rated_down
    )
    messages = (
        Message.objects.filter(
            role=Role.USER, created_at__gte=query.since, conversation__channel_id__in=channel_ids
        )
        .annotate(
            rated_down=Exists(
                Feedback.objects.filter(
                    message__reply_to=OuterRef("pk"),
                    kind=FeedbackKind.ANSWER,
                    rating__lte=ANSWER_RATING_DOWN_MAX,
                )
            )
        )
        .filter(wanted)
    )
    if query.languages is not None:
        messages = messages.filter(_locale_q(query.languages))
    if query.other_languages:
        messages = messages.exclude(_locale_q(query.other_languages))
    if query.regions is not None:
        messages = messages.filter(conversation__region__in=query.regions)
    if query.other_regions:
        messages = messages.exclude(conversation__region__in=query.other_regions)
    # Model instances, not values(): text is read through the field (were it ever sealed, it opens here).
    found = (
        messages.select_related("conversation", "reply")
        .only("text", "created_at", "conversation__locale", "conversation__region", "reply__outcome")
        .order_by("-created_at", "-pk")[: query.limit]
    )
    return [
        AskedQuestion(
            text=message.text,
            locale=message.conversation.locale,
            region=message.conversation.region,
            source=SOURCE_FALLBACK if message.reply.outcome == Outcome.FALLBACK else SOURCE_NEGATIVE,
            asked_at=message.created_at,
        )
        for message in found
    ]
