"""The learning loop's selector and services: unanswered questions grouped and redacted, phrasings attached
live at once (with the draft kept), dismissed questions hidden, a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.chat.models import Outcome
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.knowledge.learning import (
    phrasing_attach,
    question_hash,
    questions_dismiss,
    unanswered_questions,
)
from apps.knowledge.models import Chunk, ChunkKind, KnowledgeBase, LearnedQuestion, Status, Translation
from apps.knowledge.services import kb_create, translation_publish, translation_save, translation_submit
from apps.tenants.models import Membership, Tenant
from tests.fixtures.chat import web_channel
from tests.knowledge.helpers import EN, asked

pytestmark = pytest.mark.django_db

WINE = [
    "how do I get red wine out of my couch?",
    "red wine stain on my sofa, help",
    "wine spilled on the couch what do I do",
]
ACCOUNT = "delete my account"


def published(
    kb: KnowledgeBase, key: str, locale: str, *, author: Any, reviewer: Any, body: str = EN
) -> Translation:
    t = translation_save(kb=kb, key=key, locale=locale, title=f"{key} ({locale})", body=body, author=author)
    translation_submit(translation=t)
    return translation_publish(translation=t, actor=reviewer)


def test_questions_are_grouped_by_meaning_redacted_and_sorted_by_count(
    tenant_a: Tenant, kb: KnowledgeBase
) -> None:
    channel = web_channel(tenant_a)
    with tenant_context(tenant_a):
        for n, text in enumerate(WINE):
            asked(channel, text, ago=timedelta(minutes=10 - n))
        asked(channel, ACCOUNT + ", I am jane@example.com", ago=timedelta(minutes=30))
        asked(
            channel, "is the store open on sunday?", outcome=Outcome.ANSWERED, intent="knowledge"
        )  # answered
        asked(channel, "order 123 status", intent="order_status")  # an action's fallback, not a knowledge gap
        down = asked(
            channel, "how long do refunds take?", outcome=Outcome.ANSWERED, intent="knowledge", rated=2
        )
        asked(channel, "old question", ago=timedelta(days=31))  # outside the 30 days
        groups = unanswered_questions(tenant=tenant_a, kb=kb)
    assert [(g.count, g.locale, g.region) for g in groups] == [(3, "en", ""), (1, "en", ""), (1, "en", "")]
    wine = groups[0]
    assert wine.examples == list(reversed(WINE))  # newest first
    assert wine.question == WINE[-1] and wine.sources == {"fallback"}
    assert len(wine.hashes) == 3 and wine.key == question_hash(WINE[-1])
    rest = {g.question: g.sources for g in groups[1:]}
    assert rest == {down.text: {"negative"}, "delete my account, I am [EMAIL]": {"fallback"}}
    with tenant_context(tenant_a):
        only_down = unanswered_questions(tenant=tenant_a, kb=kb, source="negative")
    assert [g.question for g in only_down] == [down.text]


def test_questions_sharing_only_a_wording_pattern_stay_apart(tenant_a: Tenant, kb: KnowledgeBase) -> None:
    """USE scores "how do I close my account" / "how do I reset my password" 0.63: a centroid merged them."""
    channel = web_channel(tenant_a)
    texts = [
        "forgot my password",
        "how do I reset my password",
        "I want my account removed",
        "how do i close my account",
        "delete my account",
    ]
    with tenant_context(tenant_a):
        for n, text in enumerate(texts):
            asked(channel, text, ago=timedelta(minutes=10 - n))
        groups = unanswered_questions(tenant=tenant_a, kb=kb)
    assert sorted(sorted(g.examples) for g in groups) == [
        ["I want my account removed", "delete my account", "how do i close my account"],
        ["forgot my password", "how do I reset my password"],
    ]


def test_channels_of_other_knowledge_bases_and_other_tenants_do_not_count(
    tenant_a: Tenant, tenant_b: Tenant, kb: KnowledgeBase
) -> None:
    with tenant_context(tenant_a):
        other = kb_create(tenant=tenant_a, name="Other", source_locale="en")
        asked(
            web_channel(tenant_a, name="Other", knowledge_base_id=other.pk),
            "is the wifi password printed on the router?",
        )
        asked(web_channel(tenant_a, name="Ours", knowledge_base_id=kb.pk), "do you ship to Iceland?")
        asked(web_channel(tenant_a, name="All"), "can I pay with bitcoin?")
        assert sorted(g.question for g in unanswered_questions(tenant=tenant_a, kb=kb)) == [
            "can I pay with bitcoin?",
            "do you ship to Iceland?",
        ]
    with tenant_context(tenant_b):
        kb_b = kb_create(tenant=tenant_b, name="B", source_locale="en")
        asked(web_channel(tenant_b), "tenant b asks")
        assert [g.question for g in unanswered_questions(tenant=tenant_b, kb=kb_b)] == ["tenant b asks"]


def test_locales_and_regions_map_to_the_knowledge_base_and_limit_an_editor(
    tenant_a: Tenant, kb: KnowledgeBase, editor: Any
) -> None:
    channel = web_channel(tenant_a)
    with tenant_context(tenant_a):
        asked(channel, "Wie lange dauert die Erstattung?", locale="de-AT", region="eu")
        asked(channel, "quanto costa la spedizione?", locale="it")  # no Italian texts: the source locale's
        asked(channel, "how much is shipping to Ohio?", locale="en", region="us")
        asked(channel, "what about Mars?", locale="en", region="apac")  # a region with no variants: generic
        asked(channel, "what about Mars?", locale="de")  # the same words in another locale: another group
        everything = {(g.question, g.locale, g.region) for g in unanswered_questions(tenant=tenant_a, kb=kb)}
        assert everything == {
            ("Wie lange dauert die Erstattung?", "de", "eu"),
            ("quanto costa la spedizione?", "en", ""),
            ("how much is shipping to Ohio?", "en", "us"),
            ("what about Mars?", "en", ""),
            ("what about Mars?", "de", ""),
        }
        assert {g.question for g in unanswered_questions(tenant=tenant_a, kb=kb, locale="en", region="")} == {
            "quanto costa la spedizione?",
            "what about Mars?",
        }
        Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"], regions=["eu"])
        membership = Membership.objects.get(user=editor, tenant=tenant_a)
        mine = unanswered_questions(tenant=tenant_a, kb=kb, membership=membership)
        assert {(g.question, g.locale, g.region) for g in mine} == {
            ("Wie lange dauert die Erstattung?", "de", "eu"),
            ("what about Mars?", "de", ""),  # generic texts: any region limit allows them
        }


def _queries(tenant: Tenant, func: Any) -> int:
    with (
        CaptureQueriesContext(connections["default"]) as control,
        CaptureQueriesContext(connections["region_eu"]) as region,
    ):
        func()
    return len(control) + len(region)


def test_the_list_costs_the_same_queries_for_five_or_fifty_questions(
    tenant_a: Tenant, kb: KnowledgeBase
) -> None:
    channel = web_channel(tenant_a)
    with tenant_context(tenant_a):
        for n in range(5):
            asked(
                channel,
                f"question number {n} about the moon",
                rated=1,
                outcome=Outcome.ANSWERED,
                intent="knowledge",
            )
        questions_dismiss(
            kb=kb, locale="en", questions=[question_hash("question number 0 about the moon")], actor=None
        )
        few = _queries(tenant_a, lambda: unanswered_questions(tenant=tenant_a, kb=kb))
        for n in range(45):
            asked(channel, f"another question {n} about mars")
        many = _queries(tenant_a, lambda: unanswered_questions(tenant=tenant_a, kb=kb))
        assert sum(g.count for g in unanswered_questions(tenant=tenant_a, kb=kb)) == 49
    assert few == many <= 3  # channels (control database), questions, handled questions


def test_attach_to_a_published_text_is_live_at_once_and_audited(
    tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any, run_tasks: Any
) -> None:
    channel = web_channel(tenant_a)
    with tenant_context(tenant_a):
        text = published(kb, "returns", "en", author=alice, reviewer=reviewer)
        question = asked(channel, "can i send back my shoes, mail me at jane@example.com")
        group = unanswered_questions(tenant=tenant_a, kb=kb)[0]
        t = phrasing_attach(
            kb=kb,
            article_key="returns",
            locale="en",
            text=question.text,
            actor=alice,
            questions=group.hashes,
        )
        t.refresh_from_db()
        phrasing = "can i send back my shoes, mail me at [EMAIL]"
        assert t.status == Status.PUBLISHED and t.phrasings == [phrasing]
        assert [(r.number, r.phrasings) for r in t.revisions.order_by("number")] == [(1, []), (2, [phrasing])]
        assert t.published_revision is not None and t.published_revision.number == 2
        assert t.published_revision.body == text.body and t.published_revision.author_id == alice.pk
        chunks = Chunk.objects.filter(translation=t, kind=ChunkKind.PHRASING).values_list("text", flat=True)
        assert list(chunks) == [phrasing]  # indexed on commit
        event = AuditEvent.objects.filter(action="knowledge.phrasing_added").get()
        assert event.changes == {"kb": str(kb.pk), "revision": 2, "phrasing": phrasing, "questions": 1}
        assert "jane" not in str(event.changes)
        assert unanswered_questions(tenant=tenant_a, kb=kb) == []  # handled
        # Attaching the same phrasing again changes nothing.
        phrasing_attach(kb=kb, article_key="returns", locale="en", text=phrasing.upper(), actor=alice)
        assert t.revisions.count() == 2
        # The same question asked later, still unanswered, comes back; a dismissed one never does.
        asked(channel, question.text, ago=timedelta(0))
        assert [g.question for g in unanswered_questions(tenant=tenant_a, kb=kb)] == [phrasing]


def test_attach_over_a_draft_keeps_the_draft_latest_with_the_phrasing(
    tenant_a: Tenant,
    kb: KnowledgeBase,
    texts: dict[str, Translation],
    alice: Any,
    reviewer: Any,
    run_tasks: Any,
) -> None:
    """de: revision 1 published, revision 2 a draft by alice (45 days). rita attaches a phrasing."""
    with tenant_context(tenant_a):
        de = phrasing_attach(
            kb=kb, article_key="returns", locale="de", text="Rückgabe Schuhe?", actor=reviewer
        )
        de.refresh_from_db()
        revisions = {r.number: r for r in de.revisions.all()}
        assert sorted(revisions) == [1, 2, 3, 4]
        assert "30 Tagen" in revisions[3].body and revisions[3].phrasings == ["Rückgabe Schuhe?"]
        assert "45 Tagen" in revisions[4].body and revisions[4].phrasings == ["Rückgabe Schuhe?"]
        assert revisions[3].author_id == reviewer.pk and revisions[4].author_id == alice.pk
        assert de.published_revision_id == revisions[3].pk and de.status == Status.DRAFT
        assert de.phrasings == ["Rückgabe Schuhe?"] and "45 Tagen" in de.body
        live = Chunk.objects.filter(translation=de).values_list("kind", "text")
        assert ("phrasing", "Rückgabe Schuhe?") in live
        assert all("45 Tagen" not in text for _kind, text in live)  # the draft is not live
        # Four eyes still guard the draft: its author is still alice, so rita may approve it.
        translation_submit(translation=de)
        translation_publish(translation=de, actor=reviewer)
        de.refresh_from_db()
        assert de.published_revision is not None and de.published_revision_id == revisions[4].pk
        assert "45 Tagen" in de.published_revision.body and de.published_revision.phrasings == [
            "Rückgabe Schuhe?"
        ]


def test_attach_refuses_what_it_cannot_do(
    tenant_a: Tenant, kb: KnowledgeBase, texts: dict[str, Translation], editor: Any, alice: Any
) -> None:
    with tenant_context(tenant_a):
        Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
        with pytest.raises(PermissionDenied):
            phrasing_attach(kb=kb, article_key="returns", locale="en", text="shoes?", actor=editor)
        translation_save(kb=kb, key="draft-only", locale="en", title="Draft", body="Not yet.", author=alice)
        for key, text, field in [
            ("draft-only", "shoes?", "article"),  # never published
            ("nope", "shoes?", "article"),
            ("returns", "x" * 300, "text"),
            ("returns", "<b>shoes</b>", "text"),
            ("returns", "   ", "text"),
        ]:
            with pytest.raises(ValidationFailed) as caught:
                phrasing_attach(kb=kb, article_key=key, locale="en", text=text, actor=alice)
            assert caught.value.errors[field], (key, text)
        assert Translation.objects.get(article__key="returns", locale="en").revisions.count() == 1


def test_dismissed_questions_stay_hidden_when_asked_again(
    tenant_a: Tenant, kb: KnowledgeBase, alice: Any, editor: Any
) -> None:
    channel = web_channel(tenant_a)
    with tenant_context(tenant_a):
        asked(channel, "BUY CHEAP WATCHES www.spam.example")
        asked(channel, "wie lange dauert der Versand?", locale="de")
        group = unanswered_questions(tenant=tenant_a, kb=kb, locale="en")[0]
        Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
        with pytest.raises(PermissionDenied):
            questions_dismiss(kb=kb, locale="en", questions=group.hashes, actor=editor)
        assert (
            questions_dismiss(kb=kb, locale="en", questions=[*group.hashes, "not-a-hash"], actor=alice) == 1
        )
        asked(channel, "buy cheap watches   www.spam.example", ago=timedelta(0))
        assert [g.question for g in unanswered_questions(tenant=tenant_a, kb=kb)] == [
            "wie lange dauert der Versand?"
        ]
        assert LearnedQuestion.objects.get().action == "dismissed"
        # Per locale: the German editor's list is not changed by an English dismissal of the same words.
        asked(channel, "BUY CHEAP WATCHES www.spam.example", locale="de", ago=timedelta(0))
        assert len(unanswered_questions(tenant=tenant_a, kb=kb, locale="de")) == 2
        event = AuditEvent.objects.filter(action="knowledge.questions_dismissed").get()
        assert event.changes == {"locale": "en", "region": "", "questions": 1}
