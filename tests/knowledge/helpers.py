"""Texts and URLs the knowledge editor tests share."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from apps.chat.models import Channel, Conversation, Feedback, Message, Outcome, Role
from apps.knowledge.models import KnowledgeBase
from apps.tenants.models import Tenant

EN = "# Returns\n\nYou can return items within 30 days.\n\n## Refunds\n\nRefunds take 5 days."
DE = "# Rückgabe\n\nSie können Artikel innerhalb von 30 Tagen zurückgeben.\n\n## Erstattung\n\nDauert 5 Tage."


def editor_url(tenant: Tenant, kb: KnowledgeBase, locale: str, key: str = "returns", region: str = "") -> str:
    """The side-by-side editor of one text (and regional variant)."""
    path = reverse(
        "knowledge:editor", kwargs={"tenant_slug": tenant.slug, "kb_id": kb.pk, "key": key, "locale": locale}
    )
    return f"{path}?region={region}" if region else path


def asked(
    channel: Channel,
    text: str,
    *,
    locale: str = "en",
    region: str = "",
    outcome: str = Outcome.FALLBACK,
    intent: str = "unknown",
    rated: int | None = None,
    ago: timedelta = timedelta(minutes=1),
) -> Message:
    """A stored turn of `channel`: the customer's `text` and a reply with `outcome` (and feedback)."""
    conversation = Conversation.objects.create(
        channel_id=channel.pk, channel_kind="web", locale=locale, region=region
    )
    question = Message.objects.create(conversation=conversation, role=Role.USER, text=text, intent=intent)
    reply = Message.objects.create(
        conversation=conversation,
        role=Role.ASSISTANT,
        text="…",
        reply_to=question,
        intent=intent,
        outcome=outcome,
    )
    when = timezone.now() - ago
    Message.objects.filter(pk__in=[question.pk, reply.pk]).update(created_at=when)
    if rated is not None:
        Feedback.objects.create(conversation=conversation, message=reply, rating=rated)
    return question
