"""Demo conversations for the insights pages (issue 21), created by `seed_demo`. Idempotent.

Customers' questions in five locales asked through the real answer pipeline of each tenant's demo web channel
(so the citations are what the assistant really cites), then rated up or down, some handed to a person, and a
few the help center cannot answer (fallbacks). The knowledge base page then shows per-article quality and the
"Unanswered questions" page lists groups to write articles for. The handoffs are history: written as resolved
rows, so seeding sends no ticket to a vendor simulator.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.chat.models import Channel, Conversation, Feedback, FeedbackKind, Handoff, HandoffState
from apps.chat.principal import channel_principal
from apps.chat.services.conversations import conversation_start, message_post
from apps.core.context import as_ref, tenant_context

logger = logging.getLogger(__name__)

MARK = "insights"  # Conversation.metadata["demo"] of the seeded conversations
#: (locale, question, rating 1-5 or 0 for none, handed off afterwards).
SCRIPT: tuple[tuple[str, str, int, bool], ...] = (
    ("en", "How long does delivery take?", 5, False),
    ("en", "How long does shipping take to Germany?", 5, False),
    ("en", "How do I reset my password?", 5, False),
    ("en", "When will I get my refund?", 1, True),
    ("en", "When do I get my money back?", 1, False),
    ("en", "Which payment methods do you accept?", 5, False),
    ("en", "How do I return an item?", 1, False),
    ("en", "How do I track my order?", 0, True),
    ("en", "Do gift cards expire?", 5, False),
    ("en", "How much does shipping cost?", 1, False),
    ("de", "Wie lange dauert die Lieferung?", 5, False),
    ("de", "Wie setze ich mein Passwort zurück?", 1, True),
    ("de", "Wann bekomme ich mein Geld zurück?", 1, False),
    ("de", "Welche Zahlungsarten gibt es?", 5, False),
    ("de", "Wie storniere ich eine Bestellung?", 5, False),
    ("fr", "Quels sont les délais de livraison ?", 5, False),
    ("fr", "Comment suivre ma commande ?", 1, True),
    ("fr", "Mon paiement a été refusé, que faire ?", 1, False),
    ("es", "¿Cuánto tarda el envío?", 5, False),
    ("es", "¿Cómo restablezco mi contraseña?", 1, True),
    ("ja", "配送にはどのくらいかかりますか?", 5, False),
    ("ja", "パスワードを忘れました", 1, False),
    # Answered, but not well: the customer rated the answer down.
    ("en", "Do you deliver to Antarctica?", 1, False),
    ("de", "Liefert ihr in die Antarktis?", 1, True),
    # Questions the help center cannot answer (fallbacks): listed under "Unanswered questions".
    ("en", "Do you have a loyalty program?", 0, False),
    ("en", "Do you have a loyalty programme?", 0, False),
    ("en", "Are your products vegan?", 0, False),
    ("en", "Can I book a personal shopping appointment?", 0, False),
    ("de", "Habt ihr ein Treueprogramm?", 0, False),
    ("de", "Sind eure Produkte vegan?", 0, False),
    ("fr", "Avez-vous un programme de fidélité ?", 0, False),
    ("fr", "Livrez-vous en Antarctique ?", 0, False),
    ("es", "¿Tienen programa de fidelidad?", 0, False),
    ("es", "¿Tienen descuento para estudiantes?", 0, False),
    ("ja", "ポイントプログラムはありますか?", 0, False),
    ("ja", "ウィーンに店舗はありますか?", 0, False),
)


def seed_demo_insights(tenants: list[Any], *, channel_name: str = "Website") -> dict[str, int]:
    """Per tenant slug: how many demo conversations were created (0 when they exist already)."""
    result: dict[str, int] = {}
    for tenant in tenants:
        channel = Channel.objects.filter(tenant=tenant, name=channel_name).first()
        if channel is None:
            result[tenant.slug] = 0
            continue
        with tenant_context(tenant):
            if Conversation.objects.filter(metadata__demo=MARK).exists():
                result[tenant.slug] = 0
                continue
            result[tenant.slug] = _seed(channel, as_ref(tenant))
    logger.info("demo insights ready", extra={"conversations": result})
    return result


def _seed(channel: Channel, tenant: Any) -> int:
    principal = channel_principal(channel, tenant)
    for locale, question, rating, handed_off in SCRIPT:
        conversation = conversation_start(
            principal=principal, user_ref="", locale=locale, metadata={"demo": MARK}
        )
        turn = message_post(principal=principal, conversation=conversation, text=question)
        with transaction.atomic(using=tenant.db_alias):
            if rating:
                Feedback.objects.create(
                    conversation=conversation,
                    message_id=turn.message_id,
                    rating=rating,
                    kind=FeedbackKind.ANSWER,
                )
            if handed_off:
                Handoff.objects.create(
                    conversation=conversation,
                    state=HandoffState.RESOLVED,
                    connection_id=channel.ticket_connection_id or uuid.UUID(int=0),
                    resolution="resolved",
                    resolved_at=timezone.now(),
                )
    return len(SCRIPT)
