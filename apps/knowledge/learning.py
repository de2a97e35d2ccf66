"""The learning loop: questions the assistant could not answer become phrasings of an article.

Customers' questions whose reply fell back ("I could not find an answer") or was rated down are listed per
knowledge base, redacted and grouped by meaning, for editors; one click adds a question as a phrasing of an
article, live at once, so the next customer who asks it gets that article. Dismissing a group (spam, not a
question for the help center) hides it.

The questions live in the chat app, which sits above knowledge: chat registers a *question source* in its
AppConfig.ready() (`register_question_source`), like the retention handlers of apps.policies.registry, and
this module never imports chat. Selectors and services of the loop are both here: they are one small feature
(issue 21 adds "create an article from this" and per-locale insights to the same list).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.core.context import current_tenant
from apps.core.errors import ValidationFailed
from apps.knowledge.embeddings import EmbeddingError, EmbeddingProvider, calibration, provider_for_model
from apps.knowledge.models import (
    PHRASINGS_MAX,
    Article,
    KnowledgeBase,
    LearnedAction,
    LearnedQuestion,
    Revision,
    Translation,
    key_validator,
)
from apps.knowledge.selectors import member_may_edit, normalize_region
from apps.knowledge.services import check_allowed, index_on_commit, phrasings_clean, translation_save
from apps.security import pii
from apps.tenants import roles

logger = logging.getLogger(__name__)

#: Where an unanswered question comes from: its reply fell back, or a customer rated the answer down.
SOURCE_FALLBACK = "fallback"
SOURCE_NEGATIVE = "negative"
SOURCES = (SOURCE_FALLBACK, SOURCE_NEGATIVE)
#: How far back the list looks by default.
DEFAULT_DAYS = 30
#: Examples shown per group.
EXAMPLES = 3
#: Question hashes one attach or dismiss may record (a group holds at most HUB_LEARNING_MAX_QUESTIONS).
MAX_HASHES = 5000


# --- sources ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AskedQuestion:
    """One customer question as a source stored it (redacted when the tenant's policy asks for it)."""

    text: str
    locale: str  # the conversation's locale, e.g. "de" or "de-AT"
    region: str  # the content region the conversation was answered for ("" = the tenant's home region)
    source: str  # SOURCE_FALLBACK or SOURCE_NEGATIVE
    asked_at: datetime


@dataclass(frozen=True)
class QuestionFilter:
    """What a source should return: a superset is fine (the loop filters exactly), fewer rows are not.

    Languages are the base language of the conversation's locale ("de" for "de-AT"): `languages` lists the
    wanted ones (None: any), `other_languages` the ones to leave out. Regions alike, on the conversation's
    content region. `limit` newest first.
    """

    kb_id: str
    since: datetime
    source: str = ""  # "" = both
    languages: tuple[str, ...] | None = None
    other_languages: tuple[str, ...] = ()
    regions: tuple[str, ...] | None = None
    other_regions: tuple[str, ...] = ()
    limit: int = 500


class QuestionSource(Protocol):
    def __call__(self, *, tenant: Any, query: QuestionFilter) -> list[AskedQuestion]:
        """The tenant's unanswered questions about knowledge base `query.kb_id`, newest first."""
        ...


_sources: list[QuestionSource] = []


def register_question_source(func: QuestionSource) -> None:
    """Make the unanswered-questions list read `func` too (called in AppConfig.ready; again is a no-op)."""
    if not callable(func):
        raise ImproperlyConfigured(f"Question source {func!r} is not callable")
    if func not in _sources:
        _sources.append(func)


# --- selectors -------------------------------------------------------------------------------------------
def question_text(text: str) -> str:
    """A question as editors see it and as it is hashed: PII always redacted (whatever the tenant's storage
    policy kept), white space collapsed."""
    return " ".join(pii.redact(text or "").split())


def question_hash(text: str) -> str:
    """The key of a question once handled: the same words (ignoring case and spacing) hash the same."""
    return hashlib.sha256(question_text(text).casefold().encode()).hexdigest()


def kb_locale(kb: KnowledgeBase, locale: str) -> str:
    """The knowledge base locale a question in `locale` belongs to: the locale itself, its language
    ("de" for "de-AT"), or the source locale for a language the knowledge base has no texts in."""
    if locale in kb.locales:
        return locale
    language = locale.split("-", 1)[0]
    return language if language in kb.locales else kb.source_locale


def kb_region(kb: KnowledgeBase, region: str) -> str:
    """The region whose variants answer a question asked for `region` ("" = the generic texts)."""
    region = normalize_region(region)
    return region if region in kb.regions else ""


@dataclass
class QuestionGroup:
    """Questions that mean the same, in one locale and region of a knowledge base."""

    key: str  # the hash of its first question: stable while the group's newest question is
    locale: str
    region: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    last_asked: datetime | None = None
    sources: set[str] = field(default_factory=set)
    hashes: list[str] = field(default_factory=list)
    vector: Any = field(default=None, repr=False)  # the first question's, for the suggestions' search

    @property
    def question(self) -> str:
        return self.examples[0] if self.examples else ""


def _languages(kb: KnowledgeBase, locales: Sequence[str]) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """A superset filter on conversation languages for questions that land in `locales` (kb_locale)."""
    wanted = set(locales)
    langs = {loc.split("-", 1)[0] for loc in wanted}
    if kb.source_locale in wanted:  # also every language the knowledge base has no text in
        others = {loc.split("-", 1)[0] for loc in kb.locales if loc not in wanted} - langs
        return None, tuple(sorted(others))
    return tuple(sorted(langs)), ()


def _regions(kb: KnowledgeBase, regions: Sequence[str]) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """A superset filter on conversation regions for questions that land in `regions` (kb_region)."""
    wanted = {normalize_region(r) for r in regions}
    if "" in wanted:  # also every region without variants
        return None, tuple(sorted(set(kb.regions) - wanted))
    return tuple(sorted(wanted)), ()


def unanswered_questions(
    *,
    tenant: Any,
    kb: KnowledgeBase,
    locale: str = "",
    region: str | None = None,
    source: str = "",
    since: datetime | None = None,
    limit: int | None = None,
    membership: Any = None,
) -> list[QuestionGroup]:
    """Questions of channels using `kb` that fell back or were rated down, grouped by meaning, most asked
    first.

    Reads the newest `limit` (HUB_LEARNING_MAX_QUESTIONS) questions since `since` (30 days) from each
    registered source, drops the ones editors handled (LearnedQuestion), redacts them for display, embeds
    the distinct texts with the knowledge base's embedding model and groups them greedily per locale and
    region: a question joins a group when it is at least the model's group similarity (cosine;
    HUB_LEARNING_GROUP_SIMILARITY for USE, embeddings.calibration) similar to every question in it, else
    starts one (see _grouped). `locale`/`region` filter (region "" = the generic texts); `membership` hides
    what a localization editor may not edit. A fixed number of queries, whatever the number of questions
    (one per source, plus one for the handled ones).
    """
    limit = limit or settings.HUB_LEARNING_MAX_QUESTIONS
    since = since or timezone.now() - timedelta(days=DEFAULT_DAYS)
    locales = [locale] if locale else [loc for loc in kb.locales if _may(membership, loc)]
    regions = [normalize_region(region)] if region is not None else ["", *kb.regions]
    if not locales or source not in ("", *SOURCES):
        return []
    languages, other_languages = _languages(kb, locales)
    wanted_regions, other_regions = _regions(kb, regions)
    query = QuestionFilter(
        kb_id=str(kb.pk),
        since=since,
        source=source,
        languages=languages,
        other_languages=other_languages,
        regions=wanted_regions,
        other_regions=other_regions,
        # Twice the limit: handled questions are dropped after the read (their hashes are not in chat's rows).
        limit=limit * 2,
    )
    asked: list[AskedQuestion] = []
    for read in _sources:
        asked.extend(read(tenant=tenant, query=query))
    asked.sort(key=lambda q: q.asked_at, reverse=True)

    rows: list[tuple[AskedQuestion, str, str, str, str]] = []  # question, text, hash, locale, region
    for q in asked:
        loc, reg = kb_locale(kb, q.locale), kb_region(kb, q.region)
        if loc in locales and reg in regions and _may(membership, loc, reg):
            text = question_text(q.text)
            if text:
                rows.append((q, text, question_hash(q.text), loc, reg))
    handled = {
        (h, loc): (action, at)
        for h, loc, action, at in LearnedQuestion.objects.filter(
            kb=kb, text_hash__in={r[2] for r in rows}
        ).values_list("text_hash", "locale", "action", "handled_at")
    }
    rows = [r for r in rows if not _is_handled(handled.get((r[2], r[3])), r[0].asked_at)][:limit]
    return _grouped(rows, provider_for_model(kb.embedding_model))


def _may(membership: Any, locale: str, region: str = "") -> bool:
    return membership is None or member_may_edit(membership=membership, locale=locale, region=region)


def _is_handled(entry: tuple[str, datetime] | None, asked_at: datetime) -> bool:
    if entry is None:
        return False
    action, at = entry
    return action == LearnedAction.DISMISSED or asked_at <= at  # attached and created: until then


def _grouped(
    rows: list[tuple[AskedQuestion, str, str, str, str]], provider: EmbeddingProvider
) -> list[QuestionGroup]:
    """Group newest first (a group is named by its newest question), complete linkage: a question joins the
    group of its locale and region whose *least* similar member is most similar to it, if that is at least
    the threshold. Stricter than comparing with a centroid, which drifted ("how do I close my account" joined
    "how do I reset my password"): a wrong merge is worse than a split, since attaching a group marks every
    question in it handled."""
    distinct = list(dict.fromkeys(r[2] for r in rows))
    texts = {r[2]: r[1] for r in reversed(rows)}  # the newest spelling of each question
    similarity: np.ndarray | None = None
    vectors: np.ndarray | None = None
    if distinct:
        try:
            # Questions compared with questions: embedded as such (E5's "query: " prefix).
            vectors = np.asarray(provider.embed_questions([texts[h] for h in distinct]), dtype=np.float32)
            similarity = vectors @ vectors.T
        except EmbeddingError as exc:
            # The page stays useful without the model (an embedding endpoint down): same words, same group.
            logger.warning("unanswered questions grouped by their words only", extra={"error": str(exc)})
    position = {h: i for i, h in enumerate(distinct)}
    threshold = calibration(provider.model_id).group_similarity  # each model's cosines, its own scale
    groups: list[QuestionGroup] = []
    # Row g: each distinct question's similarity to the least similar member of group g (complete linkage,
    # kept up to date as members join, so placing a question is one vector operation).
    most = len({(r[2], r[3], r[4]) for r in rows})  # groups: at most one per question, locale and region
    least = np.empty((most, len(distinct)), dtype=np.float32)
    places: dict[tuple[str, str], int] = {}
    place_of = np.empty(most, dtype=np.int32)  # each group's locale and region, as a number
    by_key: dict[tuple[str, str, str], int] = {}
    for question, text, text_hash, loc, reg in rows:
        index = by_key.get((text_hash, loc, reg))
        if index is None:
            at = position[text_hash]
            place = places.setdefault((loc, reg), len(places))
            best = -1
            if similarity is not None and groups:
                scores = np.where(place_of[: len(groups)] == place, least[: len(groups), at], -np.inf)
                candidate = int(np.argmax(scores))
                if scores[candidate] >= threshold:
                    best = candidate
            if best < 0:
                vector = vectors[at] if vectors is not None else None
                groups.append(QuestionGroup(key=text_hash, locale=loc, region=reg, vector=vector))
                best = len(groups) - 1
                place_of[best] = place
                least[best] = similarity[at] if similarity is not None else 0.0
            elif similarity is not None:
                np.minimum(least[best], similarity[at], out=least[best])
            by_key[(text_hash, loc, reg)] = index = best
        group = groups[index]
        group.count += 1
        group.sources.add(question.source)
        if group.last_asked is None or question.asked_at > group.last_asked:
            group.last_asked = question.asked_at
        if text_hash not in group.hashes:
            group.hashes.append(text_hash)
            if len(group.examples) < EXAMPLES:
                group.examples.append(text)
    groups.sort(key=lambda g: (-g.count, -(g.last_asked.timestamp() if g.last_asked else 0.0)))
    return groups


def phrasing_target(
    *, kb: KnowledgeBase, article_key: str, locale: str, region: str = ""
) -> Translation | None:
    """The published text a question of `locale`/`region` is attached to: the region's variant when it is
    published, else the locale's generic text (None when neither is)."""
    region = normalize_region(region)
    found = {
        t.region: t
        for t in Translation.objects.filter(
            article__kb=kb,
            article__key=article_key,
            locale=locale,
            region__in=list({region, ""}),
            published_revision__isnull=False,
        )
    }
    return found.get(region) or found.get("")


# --- services --------------------------------------------------------------------------------------------
def _clean_hashes(hashes: Sequence[str]) -> list[str]:
    cleaned = [h for h in dict.fromkeys(hashes) if len(h) == 64 and all(c in "0123456789abcdef" for c in h)]
    return cleaned[:MAX_HASHES]


def _record(
    *,
    kb: KnowledgeBase,
    hashes: Sequence[str],
    action: str,
    actor: Any,
    article_key: str = "",
    locale: str = "",
    region: str = "",
) -> int:
    """Mark questions of `locale` handled (the last action on a question wins); one statement.

    Per locale: the actor was checked for this locale only, and the same words in another locale are
    another customer's question."""
    now = timezone.now()
    tenant_id = current_tenant().id
    rows = [
        LearnedQuestion(
            tenant_id=tenant_id,
            kb=kb,
            text_hash=h,
            action=action,
            article_key=article_key,
            locale=locale,
            region=region,
            actor_id=getattr(actor, "pk", None),
            handled_at=now,
        )
        for h in _clean_hashes(hashes)
    ]
    LearnedQuestion.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["kb", "locale", "text_hash"],
        update_fields=["action", "article_key", "region", "actor_id", "handled_at", "updated_at"],
    )
    return len(rows)


def phrasing_attach(
    *,
    kb: KnowledgeBase,
    article_key: str,
    locale: str,
    region: str = "",
    text: str,
    actor: Any,
    request: Any = None,
    questions: Sequence[str] = (),
) -> Translation:
    """Add a customer's question as a phrasing of a published text, live at once; mark `questions` (hashes
    from unanswered_questions) handled.

    A phrasing is never shown to customers (only matched question-to-question, never cited), so adding one
    does not wait for four-eyes review: the published revision gets it now. The history stays honest:
    revision N+1 is the published text plus the phrasing (published now); when a draft or a text in review
    is pending, revision N+2 is that working copy plus the phrasing, by the working copy's author (so
    four-eyes review of the draft is unchanged) and still the latest, so publishing the draft later keeps
    both the draft's text and the phrasing; its status does not change. Translations are not marked as
    needing an update: questions arrive per locale, and each locale learns its own.

    The text is redacted again and cleaned like every phrasing (phrasings_clean); the actor must be allowed
    to edit this locale and region. Audited ("knowledge.phrasing_added", with the phrasing but no other
    question text); indexing is queued on commit.
    """
    region = normalize_region(region)
    check_allowed(actor=actor, perm=roles.EDIT_KNOWLEDGE, locale=locale, region=region)
    errors: dict[str, list[str]] = {}
    cleaned = phrasings_clean([question_text(text)], errors)
    if not cleaned and not errors:
        errors["text"] = [_("Enter the question to add.")]
    if errors:
        raise ValidationFailed(
            _("The phrasing was not added."), {"text": errors.pop("phrasings", [])} | errors
        )
    phrasing = cleaned[0]
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        translation = (
            Translation.objects.select_for_update(of=("self",))
            .select_related("article", "published_revision")
            .filter(article__kb=kb, article__key=article_key, locale=locale, region=region)
            .first()
        )
        if translation is None or translation.published_revision is None:
            where = f"{locale}/{region}" if region else locale
            raise ValidationFailed(
                _("The phrasing was not added."),
                {
                    "article": [
                        _("“%(key)s” has no published text in %(where)s.")
                        % {"key": article_key, "where": where}
                    ]
                },
            )
        published = translation.published_revision
        latest = translation.revisions.order_by("-number").first() or published
        added = _with(published.phrasings, phrasing)
        if added is not None:
            working = _with(translation.phrasings, phrasing) if latest.pk != published.pk else None
            if len(added) > PHRASINGS_MAX or (working is not None and len(working) > PHRASINGS_MAX):
                raise ValidationFailed(
                    _("The phrasing was not added."),
                    {"text": [_("Use at most %(max)d phrasings per text.") % {"max": PHRASINGS_MAX}]},
                )
            _add_revisions(translation, published, latest, added, working, actor)
            audit_record(
                "knowledge.phrasing_added",
                tenant=tenant,
                actor=actor,
                target=translation,
                target_label=f"{kb.name}: {article_key} ({locale}{'/' + region if region else ''})",
                changes={
                    "kb": str(kb.pk),
                    "revision": translation.published_revision.number,
                    "phrasing": phrasing,
                    "questions": len(_clean_hashes(questions)),
                },
                request=request,
            )
            index_on_commit(translation_ids=[translation.pk])
        _record(
            kb=kb,
            hashes=[*questions, question_hash(phrasing)],
            action=LearnedAction.ATTACHED,
            actor=actor,
            article_key=article_key,
            locale=locale,
            region=region,
        )
    return translation


def _with(phrasings: Sequence[str], phrasing: str) -> list[str] | None:
    """`phrasings` plus `phrasing`, or None when it is there already (ignoring case)."""
    if phrasing.casefold() in {p.casefold() for p in phrasings}:
        return None
    return [*phrasings, phrasing]


def _add_revisions(
    translation: Translation,
    published: Revision,
    latest: Revision,
    added: list[str],
    working: list[str] | None,
    actor: Any,
) -> None:
    """Write revision N+1 (published + phrasing, published now) and, over a pending working copy, N+2."""
    note = "phrasing from an unanswered question"
    live = Revision(
        translation=translation,
        number=latest.number + 1,
        title=published.title,
        body=published.body,
        tags=list(published.tags),
        phrasings=added,
        author_id=getattr(actor, "pk", None),
        note=note,
    )
    live.save()
    if latest.pk == published.pk:
        translation.phrasings = added
    else:
        phrasings = working if working is not None else list(translation.phrasings)
        Revision(
            translation=translation,
            number=latest.number + 2,
            title=translation.title,
            body=translation.body,
            tags=list(translation.tags),
            phrasings=phrasings,
            # Still the draft's author: four-eyes review of the draft is unchanged.
            author_id=latest.author_id,
            note=note,
        ).save()
        translation.phrasings = phrasings
    translation.published_revision = live
    translation.published_at = timezone.now()
    translation.save(update_fields=["phrasings", "published_revision", "published_at", "updated_at"])


def questions_dismiss(
    *,
    kb: KnowledgeBase,
    locale: str,
    region: str = "",
    questions: Sequence[str],
    actor: Any,
    request: Any = None,
) -> int:
    """Hide a group of questions for good (not a question for the help center, spam); the same question
    asked again stays hidden. Returns how many distinct questions were recorded; audited without text."""
    region = normalize_region(region)
    check_allowed(actor=actor, perm=roles.EDIT_KNOWLEDGE, locale=locale, region=region)
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        count = _record(
            kb=kb, hashes=questions, action=LearnedAction.DISMISSED, actor=actor, locale=locale, region=region
        )
        audit_record(
            "knowledge.questions_dismissed",
            tenant=tenant,
            actor=actor,
            target=kb,
            changes={"locale": locale, "region": region, "questions": count},
            request=request,
        )
    return count


# --- "Create article from this" (issue 21) ----------------------------------------------------------------
#: Words of a question a proposed article key keeps.
KEY_WORDS = 8
#: Numbered keys tried before a proposal falls back to a hash ("returns", "returns-2", ...).
KEY_TRIES = 5


def _key_base(text: str) -> str:
    words = [w for w in slugify(question_text(text)).split("-") if w][:KEY_WORDS]
    return "-".join(words)[:60].strip("-") or f"question-{question_hash(text)[:8]}"


def article_key_proposals(*, kb: KnowledgeBase, texts: Sequence[str]) -> list[str]:
    """A free article key for a new article answering each of `texts` (one query for them all): its words
    in lower case ASCII, hyphenated ("how-do-i-reset-my-password"), numbered when taken; "question-<hash>"
    when no ASCII word is left (Japanese). Editors may change it; the service validates it again."""
    bases = [_key_base(text) for text in texts]
    candidates = {f"{base}-{n}" if n > 1 else base for base in bases for n in range(1, KEY_TRIES + 1)}
    taken = set(Article.objects.filter(kb=kb, key__in=candidates).values_list("key", flat=True))
    proposals: list[str] = []
    for base in bases:
        free = [
            c for c in (f"{base}-{n}" if n > 1 else base for n in range(1, KEY_TRIES + 1)) if c not in taken
        ]
        # Every try taken: the hash of the question is free in practice (the service refuses if not).
        proposals.append(free[0] if free else f"{base[:50]}-{question_hash(base)[:8]}")
        taken.add(proposals[-1])
    return proposals


def article_create_from_questions(
    *,
    kb: KnowledgeBase,
    key: str,
    locale: str,
    region: str = "",
    title: str,
    phrasings: Sequence[str] = (),
    questions: Sequence[str] = (),
    actor: Any,
    request: Any = None,
) -> Translation:
    """Start a new article from a group of unanswered questions: a draft text in the group's locale and
    region titled after the question, with the group's questions as its phrasings; mark the group handled
    ("created").

    The key must be new (an existing article is refused, never overwritten: attach the questions to it
    instead). The draft goes through review like any text, so nothing reaches customers yet. The texts are
    redacted again; the actor must be allowed to edit this locale and region. Audited
    ("knowledge.article_created_from_questions", with the key and title but no question text).
    """
    region = normalize_region(region)
    check_allowed(actor=actor, perm=roles.EDIT_KNOWLEDGE, locale=locale, region=region)
    key = (key or "").strip()
    errors: dict[str, list[str]] = {}
    try:
        key_validator(key)
    except DjangoValidationError as exc:
        errors["key"] = list(exc.messages)
    title = question_text(title)
    if not title:
        errors["title"] = [_("Enter a title.")]
    if errors:
        raise ValidationFailed(_("The article was not created."), errors)
    cleaned = [text for text in (question_text(p) for p in phrasings) if text]
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        try:
            with transaction.atomic(using=tenant.db_alias):
                Article.objects.create(kb=kb, key=key)
        except IntegrityError:
            raise ValidationFailed(
                _("The article was not created."),
                {"key": [_("An article with the key “%(key)s” exists already.") % {"key": key}]},
            ) from None
        translation = translation_save(
            kb=kb,
            key=key,
            locale=locale,
            region=region,
            title=title[:300],
            body="",
            phrasings=cleaned,
            author=actor,
            note="new article from unanswered questions",
        )
        _record(
            kb=kb,
            hashes=[*questions, *(question_hash(p) for p in cleaned)],
            action=LearnedAction.CREATED,
            actor=actor,
            article_key=key,
            locale=locale,
            region=region,
        )
        audit_record(
            "knowledge.article_created_from_questions",
            tenant=tenant,
            actor=actor,
            target=translation,
            target_label=f"{kb.name}: {key} ({locale}{'/' + region if region else ''})",
            changes={
                "kb": str(kb.pk),
                "article": key,  # not "key": the audit log blanks fields named like secrets
                "title": translation.title,
                "locale": locale,
                "region": region,
                "phrasings": len(translation.phrasings),
                "questions": len(_clean_hashes(questions)),
            },
            request=request,
        )
    return translation
