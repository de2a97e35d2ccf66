"""The "Unanswered questions" page end to end: a question asked through the chat API that falls back is
listed, attached in one click, and the same question asked again cites the article; redaction, filters,
dismissing, who may do what, other tenants (404), bad input (never a 500) and a bounded number of queries."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.chat.models import Channel, Conversation, Message, Outcome, Role
from apps.core.context import tenant_context
from apps.knowledge.embeddings import EmbeddingError, UseProvider
from apps.knowledge.models import KnowledgeBase, LearnedQuestion, Translation
from apps.knowledge.services import kb_create, translation_publish, translation_save, translation_submit
from apps.tenants.models import Membership, Tenant
from tests.chat.helpers import ask, say, start
from tests.fixtures.auth import login_verified
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db

GIFT_CARDS = "# Gift cards\n\nGift cards never expire. Use them in the online shop and in every store."
QUESTION = "do you deliver parcels to Antarctica?"


def page_text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def url(name: str, tenant: Tenant, kb: KnowledgeBase | Any) -> str:
    kb_id = kb.pk if isinstance(kb, KnowledgeBase) else kb
    return reverse(f"knowledge:{name}", kwargs={"tenant_slug": tenant.slug, "kb_id": kb_id})


def publish(
    kb: KnowledgeBase, key: str, locale: str, title: str, body: str, *, author: Any, reviewer: Any
) -> Translation:
    t = translation_save(kb=kb, key=key, locale=locale, title=title, body=body, author=author)
    translation_submit(translation=t)
    return translation_publish(translation=t, actor=reviewer)


@pytest.fixture
def articles(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any, run_tasks: Any) -> KnowledgeBase:
    """Two published English articles (shipping, gift cards) and a German one, indexed."""
    with tenant_context(tenant_a):
        publish(kb, "gift-cards", "en", "Gift cards", GIFT_CARDS, author=alice, reviewer=reviewer)
        publish(
            kb,
            "shipping",
            "en",
            "Shipping",
            "# Shipping\n\nWe ship within the EU and the US. Delivery takes 2-5 working days.",
            author=alice,
            reviewer=reviewer,
        )
        publish(
            kb,
            "shipping",
            "de",
            "Versand",
            "# Versand\n\nLieferung in 2-5 Werktagen.",
            author=alice,
            reviewer=reviewer,
        )
    return kb


def group_form(response: Any, key: str | None = None) -> dict[str, str]:
    """The hidden fields of a group's attach form on the page (the first group unless `key`)."""
    html = response.content.decode()
    start = html.index(f'data-key="{key}"') if key else html.index('class="card learning-group"')
    form = html[start : html.index("</form>", start)]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))


def test_a_fallback_becomes_a_phrasing_and_the_next_customer_gets_the_article(
    alice_client: Client, api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, articles: KnowledgeBase
) -> None:
    first = ask(api_client, api_key_a, QUESTION, locale="en")
    assert first["citations"] == [], first  # fell back
    response = alice_client.get(url("learning", tenant_a, articles))
    assert response.status_code == 200
    assert QUESTION in page_text(response)
    assert 'data-key="shipping"' in response.content.decode()  # suggested (below the answer threshold)
    fields = group_form(response)
    assert fields["locale"] == "en" and fields["region"] == "eu"  # the channel's content region
    posted = alice_client.post(
        url("learning-attach", tenant_a, articles), {**fields, "text": QUESTION, "article": "shipping"}
    )
    assert posted.status_code == 302
    listed = alice_client.get(posted["Location"])
    assert "Added as a phrasing of “Shipping” (en)" in page_text(listed)
    assert QUESTION not in page_text(listed) and "No unanswered questions" in page_text(listed)

    again = ask(api_client, api_key_a, QUESTION, locale="en")
    assert [c["article_key"] for c in again["citations"]][:1] == ["shipping"], again


def test_the_kb_page_links_to_it_and_the_empty_state_explains(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase
) -> None:
    detail = alice_client.get(
        reverse("knowledge:kb-detail", kwargs={"tenant_slug": tenant_a.slug, "kb_id": kb.pk})
    )
    assert f'href="{url("learning", tenant_a, kb)}"' in detail.content.decode()
    empty = page_text(alice_client.get(url("learning", tenant_a, kb)))
    assert "No unanswered questions" in empty and "rates its answer down" in empty
    filtered = page_text(alice_client.get(url("learning", tenant_a, kb) + "?locale=de&source=negative"))
    assert "No unanswered questions match these filters" in filtered


def _stored(tenant: Tenant, channel_id: Any, text: str, *, locale: str = "en") -> None:
    """A fallback stored without redaction (a tenant whose policy keeps transcripts as written)."""
    with tenant_context(tenant):
        conversation = Conversation.objects.create(
            channel_id=channel_id, channel_kind="web", locale=locale, region=""
        )
        question = Message.objects.create(conversation=conversation, role=Role.USER, text=text)
        Message.objects.create(
            conversation=conversation,
            role=Role.ASSISTANT,
            text="…",
            reply_to=question,
            intent="unknown",
            outcome=Outcome.FALLBACK,
        )


def test_personal_data_never_reaches_the_page(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel
) -> None:
    _stored(
        tenant_a, channel_a.pk, "refund to jane.doe@example.com card 4111 1111 1111 1111 call +49 170 1234567"
    )
    html = alice_client.get(url("learning", tenant_a, kb)).content.decode()
    assert "refund to [EMAIL]" in html
    for secret in ("jane.doe", "4111 1111", "1234567"):
        assert secret not in html


def test_grouping_filters_and_dismiss(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel
) -> None:
    for text in (
        "how do I get red wine out of my couch?",
        "red wine stain on my sofa, help",
        "wine spilled on the couch what do I do",
    ):
        _stored(tenant_a, channel_a.pk, text)
    _stored(tenant_a, channel_a.pk, "Wie lösche ich mein Konto?", locale="de")
    response = alice_client.get(url("learning", tenant_a, kb))
    assert page_text(response).count("Asked 3 times") == 1 and "Asked 1 time" in page_text(response)
    german = alice_client.get(url("learning", tenant_a, kb) + "?locale=de")
    assert "Konto" in page_text(german) and "wine" not in page_text(german)
    fields = group_form(response)
    assert len(fields["questions"].split(",")) == 3
    dismissed = alice_client.post(url("learning-dismiss", tenant_a, kb), fields)
    assert dismissed.status_code == 302
    after = page_text(alice_client.get(dismissed["Location"]))
    assert "wine" not in after and "Konto" in after
    _stored(tenant_a, channel_a.pk, "red wine stain on my sofa, help")  # asked again: stays hidden
    assert "wine" not in page_text(alice_client.get(url("learning", tenant_a, kb)))


def test_bad_or_unknown_articles_are_form_errors(
    alice_client: Client, tenant_a: Tenant, articles: KnowledgeBase, channel_a: Channel
) -> None:
    _stored(tenant_a, channel_a.pk, QUESTION)
    fields = group_form(alice_client.get(url("learning", tenant_a, articles)))
    attach = url("learning-attach", tenant_a, articles)
    for data, message in [
        ({**fields, "text": QUESTION, "article": "no-such-article"}, "has no published text in en"),
        ({**fields, "text": QUESTION}, "Choose the article"),
        ({**fields, "text": "<script>x</script>", "article": "shipping"}, "plain text"),
        ({**fields, "text": QUESTION, "article": "shipping", "locale": "x" * 17}, "at most 16 characters"),
        ({"text": QUESTION, "article": "shipping"}, "This field is required"),
        ({**fields, "text": QUESTION, "article": "../../etc"}, "has no published text"),
    ]:
        response = alice_client.post(attach, data)
        assert response.status_code == 400, data
        assert message in page_text(response), (data, page_text(response)[:500])
    assert (
        alice_client.post(url("learning-dismiss", tenant_a, articles), {"questions": "x"}).status_code == 400
    )
    with tenant_context(tenant_a):
        assert not LearnedQuestion.objects.exists()
        assert Translation.objects.get(article__key="shipping", locale="en").phrasings == []
    assert alice_client.get(url("learning-attach", tenant_a, articles)).status_code == 405


def test_a_localization_editor_sees_and_attaches_only_their_locales(
    client: Client, tenant_a: Tenant, articles: KnowledgeBase, channel_a: Channel, editor: Any
) -> None:
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
    _stored(tenant_a, channel_a.pk, QUESTION)
    _stored(tenant_a, channel_a.pk, "Liefert ihr in die Antarktis?", locale="de")
    login_verified(client, editor)
    response = client.get(url("learning", tenant_a, articles))
    assert response.status_code == 200
    assert "Antarktis" in page_text(response) and QUESTION not in page_text(response)
    fields = group_form(response)
    refused = client.post(
        url("learning-attach", tenant_a, articles),
        {**fields, "locale": "en", "text": QUESTION, "article": "shipping"},
    )
    assert refused.status_code == 403
    done = client.post(
        url("learning-attach", tenant_a, articles),
        {**fields, "text": "Liefert ihr in die Antarktis?", "article": "shipping"},
    )
    assert done.status_code == 302
    with tenant_context(tenant_a):
        assert Translation.objects.get(article__key="shipping", locale="de").phrasings == [
            "Liefert ihr in die Antarktis?"
        ]
        assert Translation.objects.get(article__key="shipping", locale="en").phrasings == []


def test_other_tenants_and_viewers_get_nothing(
    client: Client,
    alice_client: Client,
    tenant_a: Tenant,
    tenant_b: Tenant,
    kb: KnowledgeBase,
    charlie: Any,
    bob: Any,
    channel_a: Channel,
) -> None:
    _stored(tenant_a, channel_a.pk, QUESTION)
    with tenant_context(tenant_b):
        kb_b = kb_create(tenant=tenant_b, name="B help", source_locale="en")
    # alice asks for B's knowledge base under her own tenant: it does not exist there.
    assert alice_client.get(url("learning", tenant_a, kb_b.pk)).status_code == 404
    assert alice_client.post(url("learning-dismiss", tenant_a, kb_b.pk), {}).status_code == 404
    login_verified(client, charlie)
    for name in ("learning", "learning-attach", "learning-dismiss"):
        response = (
            client.post(url(name, tenant_a, kb), {"questions": "a" * 64, "locale": "en", "group": "g"})
            if name != "learning"
            else client.get(url(name, tenant_a, kb))
        )
        assert response.status_code == 404, name
        assert QUESTION.encode() not in response.content
    with tenant_context(tenant_a):
        assert not LearnedQuestion.objects.exists()
    viewer = Client()
    viewer.force_login(bob)
    assert viewer.get(url("learning", tenant_a, kb)).status_code == 403


def test_the_page_queries_do_not_grow_with_the_questions(
    alice_client: Client, tenant_a: Tenant, articles: KnowledgeBase, channel_a: Channel
) -> None:
    def measured() -> int:
        with (
            CaptureQueriesContext(connections["default"]) as control,
            CaptureQueriesContext(connections["region_eu"]) as region,
        ):
            assert alice_client.get(url("learning", tenant_a, articles)).status_code == 200
        return len(control) + len(region)

    for _n in range(2):
        _stored(tenant_a, channel_a.pk, QUESTION)
        _stored(tenant_a, channel_a.pk, "can I pay with bitcoin?")
    measured()  # warm: the session, the search's cached setup
    few = measured()
    for _n in range(20):
        _stored(tenant_a, channel_a.pk, QUESTION)
        _stored(tenant_a, channel_a.pk, "can I pay with bitcoin?")
    assert measured() == few


def test_without_the_embedding_model_the_page_groups_by_words(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel
) -> None:
    for text in (QUESTION, QUESTION.upper(), "can I pay with bitcoin?"):
        _stored(tenant_a, channel_a.pk, text)

    def down(self: Any, texts: Any) -> Any:
        raise EmbeddingError("embedding endpoint unreachable")

    with mock.patch.object(UseProvider, "embed", down):
        response = alice_client.get(url("learning", tenant_a, kb))
    assert response.status_code == 200
    assert "Asked 2 times" in page_text(response) and "Asked 1 time" in page_text(response)


def test_an_answer_rated_down_through_the_chat_api_is_listed_and_one_rated_up_is_not(
    alice_client: Client, api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, articles: KnowledgeBase
) -> None:
    """The API rates answers 1-5: 1-2 count as rated down (chat.models.ANSWER_RATING_DOWN_MAX), 4-5 as up."""
    asked = {
        "do gift cards expire?": 2,
        "how long does shipping take?": 5,
    }
    for text, rating in asked.items():
        conversation = start(api_client, api_key_a, locale="en")
        turn = say(api_client, api_key_a, conversation["id"], text).json()
        assert turn["reply"]["citations"], turn  # answered; the customer judges the answer
        rated = api_client.post(
            f"/api/v1/conversations/{conversation['id']}/feedback",
            {"rating": rating, "message_id": turn["message_id"]},
            content_type="application/json",
            **api_key_a.headers,
        )
        assert rated.status_code == 201, rated.content
    listed = page_text(alice_client.get(url("learning", tenant_a, articles)))
    assert "do gift cards expire?" in listed
    assert "how long does shipping take?" not in listed
