"""The chat turn: redact → route → act or retrieve → answer → store (with outbox actions) → metrics.

State lives in the region database (and the shared cache), never in the process: any web process can serve
any turn. One turn is one transaction: the user's message, the reply, the conversation's counters and any
outbox action commit together, so a retried request (same Idempotency-Key) finds the first result whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop as N_  # noqa: N812 - the gettext convention
from psycopg.types.json import Jsonb

from apps.chat import metrics_hooks
from apps.chat.models import Conversation, ConversationStatus, Feedback, LlmUsage, Message, Outcome, Role
from apps.chat.principal import ChannelPrincipal
from apps.chat.retention import user_ref_hash
from apps.chat.services import actions, condense, handoff, identity, intents
from apps.chat.services.llm import (
    Answer,
    Classification,
    Condensation,
    OpenAICompatibleProvider,
    ProviderError,
)
from apps.chat.services.providers import TurnModels, choice_key
from apps.core import sql
from apps.core.deadlines import optional_cache
from apps.core.errors import NotFound, ValidationFailed
from apps.knowledge.content import text_plain
from apps.knowledge.embeddings import calibration, get_provider, provider_for_model
from apps.knowledge.selectors import SearchHit, knowledge_search, normalize_locale
from apps.knowledge.version import knowledge_version
from apps.policies.services import redact_for_storage
from apps.security.fields import Ciphertext

logger = logging.getLogger(__name__)

ANSWER_CACHE_SECONDS = 300
_TRANSCRIPT_TURNS = 20  # turns copied into a handoff ticket
# Earlier customer questions a follow-up is completed with (services/condense.py): the ones that asked the
# knowledge base (answered or not), newest first; greetings and actions have no subject to carry.
_HISTORY_QUESTIONS = 3
_HISTORY_INTENTS = [intents.KNOWLEDGE, intents.UNKNOWN]


class ConversationNotFound(NotFound):
    """No such conversation for this channel (another tenant's or channel's ids look the same: absent)."""


class ChatInputError(ValidationFailed):
    def __init__(self, message: str, *, field: str = "text") -> None:
        super().__init__(message, {field: [message]})


@dataclass
class Turn:
    """What the API returns for a turn; `replayed` when an Idempotency-Key matched an earlier turn."""

    conversation_id: str
    message_id: int
    reply: dict[str, Any]
    replayed: bool = False
    timings: dict[str, float] = field(default_factory=dict)


# --- conversations ----------------------------------------------------------------------------------------
def conversation_start(
    *,
    principal: ChannelPrincipal,
    user_ref: str,
    locale: str | None = None,
    metadata: dict[str, Any] | None = None,
    user_hash: str = "",
    identity_token: str = "",
) -> Conversation:
    """Start a conversation; with a proof of the user's identity (user hash or JWT) it is verified, with an
    invalid one it is refused (IdentityInvalid, 400), without one it is anonymous."""
    channel = principal.channel
    proven = identity.identity_prove(
        principal=principal, user_ref=user_ref, user_hash=user_hash, identity_token=identity_token
    )
    if proven is not None and not user_ref:
        user_ref = proven.user_id  # a JWT names its user
    conversation = Conversation(
        channel_id=channel.id,
        channel_kind=channel.kind,
        user_ref_hash=user_ref_hash(tenant_id=principal.tenant.id, user_ref=user_ref) if user_ref else "",
        locale=normalize_locale(locale or channel.default_locale),
        region=channel.content_region,
        metadata=metadata or {},
    )
    if user_ref:
        conversation.user_ref = user_ref  # encrypted on save
    if proven is not None:
        conversation.identity_verified = True
        conversation.verified_identity = proven.as_json()  # encrypted on save
    conversation.save()
    return conversation


def conversation_identify(
    *,
    principal: ChannelPrincipal,
    conversation: Conversation,
    user_ref: str = "",
    user_hash: str = "",
    identity_token: str = "",
) -> Conversation:
    """Prove the user's identity mid-conversation (the user signed in on the site): the same proofs as at the
    start. A valid proof replaces any earlier identity; an invalid one changes nothing (400)."""
    if not user_hash and not identity_token:
        raise ChatInputError(_("Send user_hash or identity_token."), field="identity_token")
    proven = identity.identity_prove(
        principal=principal, user_ref=user_ref, user_hash=user_hash, identity_token=identity_token
    )
    if proven is None:  # cannot happen: a proof was sent, so it is valid or IdentityInvalid was raised
        raise ChatInputError(_("Send user_hash or identity_token."), field="identity_token")
    conversation.identity_verified = True
    conversation.verified_identity = proven.as_json()  # encrypted on save
    conversation.save(update_fields=["identity_verified", "verified_identity", "updated_at"])
    return conversation


# The turn's fixed statements, prepared once per connection (apps/core/sql.py): ORM compilation and
# planning were a fifth of a turn's CPU. The conversation is loaded without its encrypted user reference and
# metadata, which a turn never reads.
# In the model's field order, as Model.from_db expects for a partial row. Django's connections leave jsonb
# as text (JSONField decodes it), so the raw rows carry JSON text.
_CONVERSATION_FIELDS = (
    "created_at",
    "updated_at",
    "tenant_id",
    "id",
    "channel_id",
    "channel_kind",
    "locale",
    "region",
    "status",
    "last_intent",
    "turns",
    "identity_verified",
    "verified_identity",  # ciphertext: decrypted only when an action compares it with a CRM record
)
_TURN_START_SQL = """
SELECT c.created_at, c.updated_at, c.tenant_id, c.id, c.channel_id, c.channel_kind, c.locale, c.region,
       c.status, c.last_intent, c.turns, c.identity_verified, c.verified_identity,
       r.id, r.text, r.citations, r.intent, r.actions, r.handoff,
       CASE WHEN c.turns > 0 THEN ARRAY(
           SELECT m.text FROM chat_message m
           WHERE m.conversation_id = c.id AND m.tenant_id = c.tenant_id AND m.role = %(user_role)s
                 AND m.intent = ANY(%(asked_intents)s)
           ORDER BY m.id DESC LIMIT %(history)s
       ) END
FROM chat_conversation c
LEFT JOIN chat_message u
    ON u.conversation_id = c.id AND u.idempotency_key = %(key)s AND NOT u.idempotency_key = ''
LEFT JOIN chat_message r ON r.reply_to_id = u.id
WHERE c.id = %(id)s AND c.channel_id = %(channel)s AND c.tenant_id = %(tenant)s
"""
# The user's message, the reply and the conversation's counters in one statement (atomic on its own; inside
# the turn's transaction when an action wrote to the outbox). A concurrent retry with the same
# Idempotency-Key fails the unique index and the whole statement.
_TURN_WRITE_SQL = """
WITH asked AS (
    INSERT INTO chat_message (created_at, updated_at, tenant_id, conversation_id, role, text,
                              idempotency_key, intent, outcome, citations, actions, handoff, latency_ms,
                              model, reply_to_id, author)
    VALUES (%(now)s, %(now)s, %(tenant)s, %(conversation)s, %(user_role)s, %(asked)s, %(key)s, %(intent)s,
            '', '[]', '[]', false, NULL, '', NULL, '')
    RETURNING id
), replied AS (
    INSERT INTO chat_message (created_at, updated_at, tenant_id, conversation_id, role, text,
                              idempotency_key, intent, outcome, citations, actions, handoff, latency_ms,
                              model, reply_to_id, author)
    SELECT %(now)s, %(now)s, %(tenant)s, %(conversation)s, %(bot_role)s, %(reply)s, '', %(intent)s,
           %(outcome)s, %(citations)s, %(actions)s, %(handoff)s, %(latency)s, %(model)s, asked.id, ''
    FROM asked
    RETURNING id
), counted AS (
    UPDATE chat_conversation SET turns = turns + 1, last_intent = %(intent)s, status = %(status)s
    WHERE id = %(conversation)s AND tenant_id = %(tenant)s
)
SELECT id FROM replied
"""


@dataclass(frozen=True)
class TurnStart:
    """A turn's conversation and, when its Idempotency-Key was used before, the turn that answered it.

    `history`: this conversation's latest customer questions to the knowledge base (as stored, redacted),
    oldest first, read in the same statement; None when not read.
    """

    conversation: Conversation
    earlier: Turn | None = None
    history: tuple[str, ...] | None = None


def turn_start(*, principal: ChannelPrincipal, conversation_id: Any, idempotency_key: str = "") -> TurnStart:
    """The channel's conversation and any earlier turn with this Idempotency-Key, in one prepared query.

    Another tenant's or channel's conversation id is absent (ConversationNotFound), like an unknown one.
    """
    try:
        pk = uuid.UUID(str(conversation_id))
    except ValueError:
        raise ConversationNotFound("conversation not found") from None
    alias = principal.tenant.db_alias
    rows = sql.fetch(
        alias,
        _TURN_START_SQL,
        {
            "key": idempotency_key,
            "id": pk,
            "channel": principal.channel.id,
            "tenant": principal.tenant.id,
            "user_role": Role.USER.value,
            "asked_intents": _HISTORY_INTENTS,
            "history": _HISTORY_QUESTIONS,
        },
    )
    if not rows:
        raise ConversationNotFound("conversation not found")
    row = rows[0]
    count = len(_CONVERSATION_FIELDS)
    values = list(row[:count])
    if values[-1] is not None:
        values[-1] = Ciphertext(values[-1])  # as the field's from_db_value marks it: stored form, not plain
    conversation = Conversation.from_db(alias, _CONVERSATION_FIELDS, values)
    reply_id, (text, citations, intent, acts, handoff) = row[count], row[count + 1 : count + 6]
    history = tuple(reversed(row[count + 6] or ()))
    if reply_id is None:
        return TurnStart(conversation=conversation, history=history)
    earlier = Turn(
        conversation_id=str(pk),
        message_id=reply_id,
        reply={
            "text": text,
            "citations": json.loads(citations),
            "intent": intent,
            "actions": json.loads(acts),
            "handoff": handoff,
        },
        replayed=True,
    )
    return TurnStart(conversation=conversation, earlier=earlier, history=history)


def conversation_for(*, principal: ChannelPrincipal, conversation_id: Any) -> Conversation:
    return turn_start(principal=principal, conversation_id=conversation_id).conversation


def _write_turn(
    principal: ChannelPrincipal,
    conversation: Conversation,
    *,
    asked: str,
    idempotency_key: str,
    draft: _Draft,
    latency_ms: float,
) -> int:
    """Store the user's message and the reply and count the turn; return the reply's id."""
    params = {
        "now": timezone.now(),
        "tenant": principal.tenant.id,
        "conversation": conversation.pk,
        "user_role": Role.USER.value,
        "bot_role": Role.ASSISTANT.value,
        "asked": asked,
        "key": idempotency_key,
        "intent": draft.intent,
        "outcome": draft.outcome,
        "reply": draft.text,
        "citations": Jsonb(draft.citations),
        "actions": Jsonb(draft.actions),
        "handoff": draft.handoff,
        "latency": latency_ms,
        "model": draft.answer.model if draft.answer else "",
        "status": conversation.status,
    }
    return int(sql.fetch(principal.tenant.db_alias, _TURN_WRITE_SQL, params)[0][0])


def _reply_dict(message: Message) -> dict[str, Any]:
    return {
        "text": message.text,
        "citations": message.citations,
        "intent": message.intent,
        "actions": message.actions,
        "handoff": message.handoff,
    }


@dataclass
class _Draft:
    text: str
    intent: str
    outcome: str
    citations: list[dict[str, str]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    handoff: bool = False
    answer: Answer | None = None
    cache_key: str = ""
    classification: Classification | None = None  # when a provider routed the turn
    condensation: Condensation | None = None  # when a provider rewrote a follow-up


def _t(locale: str, message: str, **params: Any) -> str:
    """Translate `message` into the conversation's language."""
    with translation.override(locale.split("-", 1)[0]):
        return _(message) % params if params else _(message)


def _cache_key(
    principal: ChannelPrincipal, conversation: Conversation, text: str, *, context: str = ""
) -> str:
    """The answer cache key: a follow-up's `context` (the question it completes) is part of the question, so
    "and for a sofa?" after two different questions are two answers."""
    version = knowledge_version(tenant_id=principal.tenant.id)
    parts = [
        str(principal.tenant.id),
        str(version),
        conversation.locale,
        conversation.region,
        str(principal.channel.knowledge_base_id or ""),
        intents.normalize_question(text),
    ]
    if context:
        parts.append(intents.normalize_question(context))
    return "chat:answer:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _citations(hits: list[SearchHit], cited: tuple[int, ...]) -> list[dict[str, str]]:
    return [
        {
            "kb_id": hits[i].kb_id,  # per-article quality counts citations per knowledge base (issue 21)
            "article_key": hits[i].article_key,
            "title": text_plain(hits[i].title),
            "locale": hits[i].locale,
            "url": hits[i].citation_url,
        }
        for i in cited
        if i < len(hits)
    ]


def _cached_answer(
    principal: ChannelPrincipal, conversation: Conversation, key: str, timings: dict[str, float]
) -> tuple[_Draft | None, TurnModels]:
    """The cached answer, if any, and the turn's language models: both read in one cache round trip."""
    models_key = choice_key(tenant_id=principal.tenant.id, region=conversation.region)
    found = cache.get_many([key, models_key])
    models = TurnModels(tenant=principal.tenant, region=conversation.region, cached=found.get(models_key))
    cached = found.get(key)
    if cached is None:
        return None, models
    timings["cache_hit"] = 1.0
    return _Draft(**cached), models


def _knowledge(
    principal: ChannelPrincipal,
    conversation: Conversation,
    text: str,
    timings: dict[str, float],
    *,
    key: str | None = None,
    vector: Any = None,
    models: TurnModels | None = None,
    alone: tuple[str, Any] | None = None,
) -> _Draft:
    """Answer `text` from the knowledge base. `alone`: the user's own words and their vector when `text` is
    their offline completion with an earlier question (see _compose)."""
    if key is None or models is None:  # with a key, the caller has looked in the answer cache already
        key = _cache_key(principal, conversation, text)
        cached, models = _cached_answer(principal, conversation, key, timings)
        if cached is not None:
            return cached
    started = time.perf_counter()
    hits = _search(principal, conversation, text, vector)
    if alone is not None:
        # The completion stays only if the knowledge base is surer about it than about the message alone:
        # a short new question with no announcement ("invoice pdf") is best searched on its own words.
        alone_hits = _search(principal, conversation, alone[0], alone[1])
        if alone_hits and (not hits or alone_hits[0].relevance >= hits[0].relevance):
            text, vector, hits = alone[0], alone[1], alone_hits
        else:
            timings["condensed"] = 1.0
    timings["retrieval_ms"] = (time.perf_counter() - started) * 1000
    metrics_hooks.retrieval(region=conversation.region, seconds=timings["retrieval_ms"] / 1000)
    if not hits or _off_topic(hits[0], conversation.locale, text, vector):
        # Nothing in the knowledge base is about this: say so rather than cite the least unrelated article.
        draft = _Draft(
            text=_t(
                conversation.locale,
                N_("Sorry, I could not find an answer. Please rephrase the question, or ask for a person."),
            ),
            intent=intents.UNKNOWN,
            outcome=Outcome.FALLBACK,
        )
        cache.set(
            key,
            draft.__dict__ | {"answer": None, "cache_key": "", "classification": None},
            ANSWER_CACHE_SECONDS,
        )
        return draft
    provider = models.answer
    try:
        answer = provider.answer(question=text, locale=conversation.locale, hits=hits)
    except ProviderError as exc:
        logger.warning("language model failed, answering offline", extra={"error": str(exc)})
        from apps.chat.services.llm import ExtractiveProvider

        answer = ExtractiveProvider().answer(question=text, locale=conversation.locale, hits=hits)
    draft = _Draft(
        # reply.text is plain text (ReplySerializer): no markup from an article or a model reaches a channel.
        text=text_plain(answer.text),
        intent=intents.KNOWLEDGE,
        outcome=Outcome.ANSWERED,
        citations=_citations(hits, answer.cited),
        answer=answer,
    )
    cache.set(
        key,
        {"text": draft.text, "intent": draft.intent, "outcome": draft.outcome, "citations": draft.citations},
        ANSWER_CACHE_SECONDS,
    )
    return draft


def answer_threshold(locale: str, model_id: str = "") -> float:
    """The relevance below which the chat falls back, for a conversation's language and the embedding model
    of the hit (HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE, else HUB_CHAT_MIN_RELEVANCE, or the model's own
    calibration: embeddings.calibration)."""
    return calibration(model_id).threshold(locale)


def _off_topic(best: SearchHit, locale: str, text: str, vector: Any) -> bool:
    """Whether the best article is too far from the question to answer with: below the language's threshold,
    or the question is about as close to the off-topic examples as to it (intents.OFF_TOPIC_EXAMPLES).

    Both compare cosines of the model that found the article: when its knowledge base is on another model
    than the configured one (being re-indexed, or switched alone), the question is embedded with that one."""
    calibrated = calibration(best.model_id)
    if best.relevance < calibrated.threshold(locale):
        return True
    if vector is None:
        return False
    provider = get_provider()
    if best.model_id and best.model_id != provider.model_id:
        provider = provider_for_model(best.model_id)
        vector = provider.embed_query(text)
    similarity = intents.off_topic_similarity(vector, provider=provider)
    return similarity > best.relevance - calibrated.off_topic_margin


def _search(
    principal: ChannelPrincipal, conversation: Conversation, text: str, vector: Any
) -> list[SearchHit]:
    return knowledge_search(
        tenant=principal.tenant,
        query=text,
        locale=conversation.locale,
        region=conversation.region,
        k=settings.HUB_CHAT_RETRIEVAL_K,
        kb=str(principal.channel.knowledge_base_id) if principal.channel.knowledge_base_id else None,
        query_vector=vector,
    )


def _transcript(conversation: Conversation) -> str:
    rows = list(
        Message.objects.filter(conversation=conversation)
        .order_by("-id")
        .values_list("role", "text")[: _TRANSCRIPT_TURNS * 2]
    )
    return "\n".join(f"{role}: {text}" for role, text in reversed(rows))


def _action_reply(locale: str, result: actions.ActionResult, *, queued: str, unavailable: str) -> str:
    if result.status != "queued":
        return _t(locale, unavailable)
    text = _t(locale, queued, reference=result.reference)
    if result.degraded:
        text += " " + _t(
            locale,
            N_("Our system is catching up right now: your request is saved and will be completed shortly."),
        )
    return text


def _route_action(
    principal: ChannelPrincipal,
    conversation: Conversation,
    routed: intents.Routed,
    stored_text: str,
    reason: str = "",
) -> _Draft | None:
    """Run an allowed action intent; None when the channel does not allow it (then it is a question)."""
    channel, locale = principal.channel, conversation.locale
    if routed.intent not in channel.allowed_actions:
        return None
    if routed.intent == intents.HANDOFF:
        return _handoff(principal, conversation, reason=reason)
    if routed.intent == intents.ORDER_STATUS:
        number = routed.params.get("number")
        if not number:
            return _Draft(
                text=_t(locale, N_("Which order do you mean? Please send the order number.")),
                intent=routed.intent,
                outcome=Outcome.ACTION,
            )
        # Order data only for a verified user who is the order's customer (docs/security.md, "End-user
        # identity"): without a verified e-mail or phone the lookup does not even run, and another customer's
        # order reads exactly like a missing one.
        verified = identity.conversation_identity(conversation)
        if verified is None or not verified.has_contact:
            _refused(principal, routed.intent, "unverified" if verified is None else "no_contact")
            text = _t(
                locale,
                N_(
                    "For your security I can only share order details once you are signed in. Please sign "
                    "in on our website and ask again, or ask for a person."
                ),
            )
            return _Draft(text=text, intent=routed.intent, outcome=Outcome.FALLBACK)
        order = actions.order_lookup(number=number, identity=verified)
        if order is None:
            _refused(principal, routed.intent, "mismatch")
            text = _t(
                locale,
                N_("I could not find order %(number)s for your account. Please check the number."),
                number=number,
            )
            return _Draft(text=text, intent=routed.intent, outcome=Outcome.FALLBACK)
        with translation.override(locale.split("-", 1)[0]):
            when = formats.date_format(order.updated_at, "SHORT_DATE_FORMAT")
        text = _t(
            locale,
            N_("Order %(number)s: %(status)s (last updated %(date)s)."),
            number=order.number,
            status=order.status or "?",
            date=when,
        )
        action = {
            "type": intents.ORDER_STATUS,
            "status": "done",
            "order": order.number,
            "state": order.status,
        }
        return _Draft(text=text, intent=routed.intent, outcome=Outcome.ACTION, actions=[action])
    if routed.intent == intents.CREATE_TICKET:
        result = actions.ticket_create(
            channel=channel,
            conversation_id=conversation.pk,
            subject=stored_text[:120],
            description=_transcript(conversation) + f"\nuser: {stored_text}",
            locale=locale,
            identity=identity.conversation_identity(conversation),
        )
        text = _action_reply(
            locale,
            result,
            queued=N_("I have opened a support ticket for you (reference %(reference)s)."),
            unavailable=N_("I cannot open tickets here yet. Please contact support directly."),
        )
        return _Draft(text=text, intent=routed.intent, outcome=Outcome.ACTION, actions=[result.as_dict()])
    if routed.intent == intents.CAPTURE_LEAD:
        email = routed.params.get("email")
        if not email:
            return _Draft(
                text=_t(
                    locale, N_("Happy to help! Which e-mail address should our team use to contact you?")
                ),
                intent=routed.intent,
                outcome=Outcome.ACTION,
            )
        result = actions.lead_capture(
            channel=channel,
            conversation_id=conversation.pk,
            email=email,
            note=stored_text[:500],
            identity=identity.conversation_identity(conversation),
        )
        text = _action_reply(
            locale,
            result,
            queued=N_("Thank you! Our team will contact you shortly (reference %(reference)s)."),
            unavailable=N_("I cannot pass on contact requests here yet. Please contact sales directly."),
        )
        return _Draft(text=text, intent=routed.intent, outcome=Outcome.ACTION, actions=[result.as_dict()])
    return None


def _refused(principal: ChannelPrincipal, action: str, reason: str) -> None:
    metrics_hooks.identity_refusal(principal=principal, action=action, reason=reason)


def _handoff(principal: ChannelPrincipal, conversation: Conversation, *, reason: str) -> _Draft:
    """Hand the conversation to people (services/handoff.py): route, ticket and Handoff in this transaction;
    the conversation is handed off only when a ticket was queued."""
    locale = conversation.locale
    if conversation.status == ConversationStatus.HANDOFF:
        return _Draft(
            text=_t(locale, N_("A colleague has already been asked to take over and will reply here.")),
            intent=intents.HANDOFF,
            outcome=Outcome.HANDOFF,
            handoff=True,
        )
    opened = handoff.handoff_open(
        principal=principal,
        conversation=conversation,
        transcript=_transcript(conversation),
        # The reason is the user's own words, like a message: redacted the same way before it is stored
        # in the outbox and sent to the ticket system (then cut, so no half e-mail escapes the patterns).
        reason=redact_for_storage(tenant=principal.tenant, text=reason)[:500] if reason else "",
        identity=identity.conversation_identity(conversation),
    )
    result = opened.result
    if opened.handoff is not None:
        conversation.status = ConversationStatus.HANDOFF
    text = _action_reply(
        locale,
        result,
        queued=N_(
            "A colleague will take over and can see our conversation so far (reference %(reference)s)."
        ),
        unavailable=N_(
            "No colleague can take over in this channel right now. Please contact support directly."
        ),
    )
    note = handoff.outside_hours_note(decision=opened.decision, locale=locale) if opened.handoff else ""
    if note:
        text = f"{text} {note}"
    return _Draft(
        text=text,
        intent=intents.HANDOFF,
        outcome=Outcome.HANDOFF,
        actions=[result.as_dict()],
        handoff=result.status == "queued",
    )


def _compose(
    principal: ChannelPrincipal,
    conversation: Conversation,
    text: str,
    stored_text: str,
    timings: dict[str, float],
    transaction_scope: ExitStack,
    history: tuple[str, ...] | None = None,
) -> _Draft:
    if conversation.status == ConversationStatus.HANDOFF:
        # message_post answers handed-off conversations without a turn; this is the race where the status
        # changed between its check and here: the same quiet answer would be right, a second ticket not.
        return _handoff(principal, conversation, reason="")
    rating = handoff.rating_of(text)
    if rating is not None:
        pending = handoff.csat_pending(conversation)
        if pending is not None:
            handoff.csat_record(conversation=conversation, rating=rating)
            return _Draft(
                text=_t(conversation.locale, N_("Thank you for your rating!")),
                intent=handoff.CSAT_INTENT,
                outcome=Outcome.ANSWERED,
            )
    routed = intents.route(text)
    key = vector = models = classification = condensation = alone = None
    query = text
    if routed.intent == intents.KNOWLEDGE:
        # A follow-up ("and for a sofa?") is searched with the question it follows (services/condense.py);
        # the cache key holds that question too. Routing still reads only the user's own words.
        condensed, history = _condensed(conversation, text, history)
        query = condensed.query
        # A question answered before is answered from the cache (routing is deterministic, so the same
        # words would route the same way again); only new open questions pay for the embedding, which
        # also catches paraphrased action requests.
        key = _cache_key(principal, conversation, text, context=condensed.context)
        cached, models = _cached_answer(principal, conversation, key, timings)
        if cached is not None:
            return cached
        if condensed.depends and (condenser := models.condenser) is not None:
            query, condensation = _rewrite(condenser, text, condensed, history or (), timings)
        provider = get_provider()
        started = time.perf_counter()
        vector = own_vector = provider.embed_query(text)
        if query != text:
            vector = provider.embed_query(query)
            if condensation is None:  # the offline completion is checked against the message alone
                alone = (text, own_vector)
        timings["embed_ms"] = (time.perf_counter() - started) * 1000
        routed = intents.route(text, vector=own_vector, provider=provider)
        if routed.via == "default" and (classifier := models.classifier) is not None:
            # Neither a rule nor an example was sure: the tenant's provider may name the intent.
            routed, classification = _classify(classifier, text, timings)
    draft = _respond(
        principal,
        conversation,
        routed,
        query,
        stored_text,
        timings,
        transaction_scope,
        key,
        vector,
        models,
        alone=alone,
    )
    draft.classification = classification
    draft.condensation = condensation
    return draft


def _condensed(
    conversation: Conversation, text: str, history: tuple[str, ...] | None
) -> tuple[condense.Condensed, tuple[str, ...] | None]:
    """`text` completed with this conversation's earlier questions when it depends on them, and those
    questions. They usually came with the turn's first statement; read here only when they did not (a
    caller without `turn_start`), and only for a follow-up in a conversation that has turns."""
    if not settings.HUB_CHAT_CONDENSE or not conversation.turns or not condense.depends_on_conversation(text):
        return condense.Condensed(query=text), history
    if history is None:
        rows = (
            Message.objects.filter(
                conversation_id=conversation.pk, role=Role.USER, intent__in=_HISTORY_INTENTS
            )
            .order_by("-id")
            .values_list("text", flat=True)[:_HISTORY_QUESTIONS]
        )
        history = tuple(reversed(rows))
    return condense.condense(text, history), history


def _rewrite(
    condenser: OpenAICompatibleProvider,
    text: str,
    condensed: condense.Condensed,
    history: tuple[str, ...],
    timings: dict[str, float],
) -> tuple[str, Condensation | None]:
    """The tenant's model rewrites the follow-up as a standalone question, with the earlier questions as
    they were asked; on any failure the offline completion is the query."""
    started = time.perf_counter()
    try:
        condensation = condenser.condense(
            text, history=history or [condensed.context], timeout=settings.HUB_CHAT_CONDENSE_TIMEOUT
        )
    except ProviderError as exc:
        logger.warning(
            "language model could not rewrite a follow-up, completing it offline", extra={"error": str(exc)}
        )
        return condensed.query, None
    finally:
        timings["condense_ms"] = (time.perf_counter() - started) * 1000
    return condensation.text, condensation


def _classify(
    classifier: OpenAICompatibleProvider, text: str, timings: dict[str, float]
) -> tuple[intents.Routed, Classification | None]:
    """The intent the provider names for `text`; on any failure the turn stays a knowledge question."""
    started = time.perf_counter()
    try:
        classification = classifier.classify(text, intents=intents.CLASSIFIER_INTENTS)
    except ProviderError as exc:
        logger.warning(
            "language model could not classify, answering as a question", extra={"error": str(exc)}
        )
        return intents.Routed(intents.KNOWLEDGE, confidence=0.0, via="default"), None
    finally:
        timings["classify_ms"] = (time.perf_counter() - started) * 1000
    return intents.classified(text, intent=classification.intent), classification


def _respond(
    principal: ChannelPrincipal,
    conversation: Conversation,
    routed: intents.Routed,
    text: str,
    stored_text: str,
    timings: dict[str, float],
    transaction_scope: ExitStack,
    key: str | None,
    vector: Any,
    models: TurnModels | None,
    *,
    alone: tuple[str, Any] | None = None,
) -> _Draft:
    """The reply to a routed message: a greeting, an allowed action, or an answer from the knowledge base."""
    locale = conversation.locale
    if routed.intent == intents.SMALL_TALK:
        return _Draft(
            text=_t(locale, N_("Hello! Ask me a question, or tell me what you need help with.")),
            intent=routed.intent,
            outcome=Outcome.ANSWERED,
        )
    if routed.intent in intents.ACTION_INTENTS:
        if routed.intent in intents.OUTBOX_INTENTS:
            # The outbox message and the turn commit together: a retried request finds both or neither.
            transaction_scope.enter_context(transaction.atomic(using=principal.tenant.db_alias))
        draft = _route_action(principal, conversation, routed, stored_text)
        if draft is not None:
            return draft
    return _knowledge(
        principal, conversation, text, timings, key=key, vector=vector, models=models, alone=alone
    )


def message_post(
    *,
    principal: ChannelPrincipal,
    conversation: Conversation,
    text: str,
    idempotency_key: str = "",
    start: TurnStart | None = None,
) -> Turn:
    """Answer one user message; a repeated Idempotency-Key returns the first answer, never a second one.

    `start` is what `turn_start` found for this conversation and key (the API looks it up before it
    validates the body); without it the earlier turn is looked up here.
    """
    started = time.perf_counter()
    text = (text or "").strip()
    if not text:
        raise ChatInputError(_("Text must not be empty."))
    if len(text) > settings.HUB_CHAT_MAX_TEXT:
        raise ChatInputError(
            _("Text is too long: at most %(max)d characters.") % {"max": settings.HUB_CHAT_MAX_TEXT}
        )
    if len(idempotency_key) > 128:
        raise ChatInputError(
            _("Idempotency-Key is too long: at most 128 characters."), field="Idempotency-Key"
        )
    if idempotency_key:
        if start is None:
            start = turn_start(
                principal=principal, conversation_id=conversation.pk, idempotency_key=idempotency_key
            )
        if start.earlier is not None:
            return start.earlier
    timings: dict[str, float] = {}
    stored_text = redact_for_storage(tenant=principal.tenant, text=text)
    if conversation.status == ConversationStatus.HANDOFF:
        return _handed_off_turn(principal, conversation, stored_text, idempotency_key, started)
    try:
        # A turn that writes to the outbox opens a transaction (see _compose); the others need none, their
        # one write statement is atomic by itself.
        with ExitStack() as transaction_scope:
            # Without Redis the answer cache (and the knowledge version it is keyed by) is skipped, not
            # fatal; storing the turn is: if _write_turn fails, the client gets 503, not this answer.
            with optional_cache("cache"):
                draft = _compose(
                    principal,
                    conversation,
                    text,
                    stored_text,
                    timings,
                    transaction_scope,
                    history=start.history if start is not None else None,
                )
            usages = [
                used
                for used in (draft.classification, draft.condensation, draft.answer)
                if used is not None and used.model and (used.prompt_tokens or used.completion_tokens)
            ]
            if usages:
                transaction_scope.enter_context(transaction.atomic(using=principal.tenant.db_alias))
            reply_id = _write_turn(
                principal,
                conversation,
                asked=stored_text,
                idempotency_key=idempotency_key,
                draft=draft,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
            for used in usages:
                _record_usage(principal, conversation, used)
    except IntegrityError:
        # A concurrent retry with the same key committed first: its answer is the answer.
        if idempotency_key:
            earlier = turn_start(
                principal=principal, conversation_id=conversation.pk, idempotency_key=idempotency_key
            ).earlier
            if earlier is not None:
                return earlier
        raise
    seconds = time.perf_counter() - started
    metrics_hooks.turn(
        principal=principal,
        region=conversation.region,
        outcome=draft.outcome,
        seconds=seconds,
        locale=conversation.locale,
    )
    return Turn(
        conversation_id=str(conversation.pk),
        message_id=reply_id,
        reply={
            "text": draft.text,
            "citations": draft.citations,
            "intent": draft.intent,
            "actions": draft.actions,
            "handoff": draft.handoff,
        },
        timings=timings,
    )


def _handed_off_turn(
    principal: ChannelPrincipal, conversation: Conversation, stored_text: str, key: str, started: float
) -> Turn:
    """A handed-off conversation: the message goes to the agents' ticket and the bot stays quiet — the
    turn's reply has no text (`reply.text` null, `reply.handoff` true); agents answer later."""
    message, new = handoff.handoff_customer_message(
        conversation=conversation, stored_text=stored_text, idempotency_key=key
    )
    if new:
        metrics_hooks.turn(
            principal=principal,
            region=conversation.region,
            outcome=Outcome.HANDOFF,
            seconds=time.perf_counter() - started,
            locale=conversation.locale,
        )
    return Turn(
        conversation_id=str(conversation.pk),
        message_id=message.pk,
        reply={"text": None, "citations": [], "intent": intents.HANDOFF, "actions": [], "handoff": True},
        replayed=not new,
    )


def _record_usage(
    principal: ChannelPrincipal, conversation: Conversation, used: Answer | Classification | Condensation
) -> None:
    LlmUsage.objects.create(
        conversation_id=conversation.pk,
        channel_kind=principal.channel.kind,
        region=conversation.region,
        model=used.model,
        prompt_tokens=used.prompt_tokens,
        completion_tokens=used.completion_tokens,
        cost_usd=used.cost_usd,
    )
    metrics_hooks.llm_usage(principal=principal, region=conversation.region, answer=used)


# --- explicit handoff and feedback ------------------------------------------------------------------------
def handoff_request(*, principal: ChannelPrincipal, conversation: Conversation, reason: str = "") -> Turn:
    """The channel asks for a human explicitly (a button): a handoff ticket with the transcript."""
    started = time.perf_counter()
    with transaction.atomic(using=principal.tenant.db_alias):
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if intents.HANDOFF in principal.channel.allowed_actions:
            draft = _handoff(principal, conversation, reason=reason)
        else:
            draft = _Draft(
                text=_t(
                    conversation.locale,
                    N_("No colleague can take over in this channel. Please contact support."),
                ),
                intent=intents.HANDOFF,
                outcome=Outcome.FALLBACK,
            )
        reply = Message.objects.create(
            conversation=conversation,
            role=Role.ASSISTANT,
            text=draft.text,
            intent=draft.intent,
            outcome=draft.outcome,
            actions=draft.actions,
            handoff=draft.handoff,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        Conversation.objects.filter(pk=conversation.pk).update(status=conversation.status)
    metrics_hooks.turn(
        principal=principal,
        region=conversation.region,
        outcome=draft.outcome,
        seconds=time.perf_counter() - started,
        locale=conversation.locale,
    )
    return Turn(conversation_id=str(conversation.pk), message_id=reply.pk, reply=_reply_dict(reply))


def feedback_add(
    *,
    principal: ChannelPrincipal,
    conversation: Conversation,
    rating: int,
    comment: str = "",
    message_id: int | None = None,
) -> Feedback:
    message = None
    if message_id is not None:
        message = Message.objects.filter(
            pk=message_id, conversation=conversation, role=Role.ASSISTANT
        ).first()
        if message is None:
            raise ChatInputError(_("No such reply in this conversation."), field="message_id")
    feedback = Feedback.objects.create(
        conversation=conversation,
        message=message,
        rating=rating,
        comment=redact_for_storage(tenant=principal.tenant, text=comment.strip()),
    )
    metrics_hooks.feedback(
        principal=principal, region=conversation.region, rating=rating, locale=conversation.locale
    )
    return feedback
