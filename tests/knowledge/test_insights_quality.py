"""Per-article quality on the knowledge base and article pages: citations, ratings and handoffs after a
citation per article and locale, worst first; the window, sorting, pagination, a localization editor's
locales, other tenants (404, and never counted even in the same region database), the empty state and a
fixed number of queries."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.chat.models import Channel, Conversation, Feedback, Handoff, Message, Outcome, Role
from apps.core.context import tenant_context
from apps.knowledge.insights import article_quality
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import translation_publish, translation_save, translation_submit
from apps.tenants.models import Membership, Region, Tenant
from tests.chat.helpers import ask
from tests.factories import TenantFactory
from tests.fixtures.auth import login_verified
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db


def page_text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def kb_url(tenant: Tenant, kb: Any) -> str:
    return reverse("knowledge:kb-detail", kwargs={"tenant_slug": tenant.slug, "kb_id": getattr(kb, "pk", kb)})


def article_url(tenant: Tenant, kb: Any, key: str) -> str:
    return reverse(
        "knowledge:article", kwargs={"tenant_slug": tenant.slug, "kb_id": getattr(kb, "pk", kb), "key": key}
    )


def rows(response: Any) -> dict[tuple[str, str], dict[str, str]]:
    """The quality table's rows: (article key or "", locale) -> {citations, positive, ...}."""
    html = response.content.decode()
    found: dict[tuple[str, str], dict[str, str]] = {}
    for attrs, body in re.findall(r'<tr class="quality"([^>]*)>(.*?)</tr>', html, re.S):
        key = re.search(r'data-key="([^"]*)"', attrs)
        locale = re.search(r'data-locale="([^"]*)"', attrs)
        cells = dict(re.findall(r'<td class="(\w+)">([^<]*)</td>', body))
        found[(key.group(1) if key else "", locale.group(1) if locale else "")] = cells
    return found


def publish(
    kb: KnowledgeBase, key: str, locale: str, title: str, body: str, *, alice: Any, reviewer: Any
) -> None:
    t = translation_save(kb=kb, key=key, locale=locale, title=title, body=body, author=alice)
    translation_submit(translation=t)
    translation_publish(translation=t, actor=reviewer)


def answer(
    tenant: Tenant,
    kb: KnowledgeBase | Any,
    citations: list[tuple[str, str]],
    *,
    rating: int = 0,
    handoff: bool = False,
    ago: timedelta = timedelta(hours=1),
    legacy: bool = False,
) -> None:
    """A stored answer citing `citations` ((key, locale) of `kb`), rated and handed off as asked."""
    kb_id = str(getattr(kb, "pk", kb))
    with tenant_context(tenant):
        conversation = Conversation.objects.create(
            channel_id=uuid.uuid4(),
            channel_kind="web",
            locale=citations[0][1] if citations else "en",
            region="eu",
        )
        question = Message.objects.create(conversation=conversation, role=Role.USER, text="a question")
        cited = [
            {
                "article_key": key,
                "title": key,
                "locale": locale,
                "url": f"/t/x/knowledge/{kb_id}/articles/{key}/",
            }
            | ({} if legacy else {"kb_id": kb_id})
            for key, locale in citations
        ]
        reply = Message.objects.create(
            conversation=conversation,
            role=Role.ASSISTANT,
            text="an answer",
            reply_to=question,
            intent="knowledge",
            outcome=Outcome.ANSWERED,
            citations=cited,
        )
        when = timezone.now() - ago
        Message.all_tenants.filter(pk__in=[question.pk, reply.pk]).update(created_at=when)
        if rating:
            Feedback.objects.create(conversation=conversation, message=reply, rating=rating)
        if handoff:
            made = Handoff.objects.create(conversation=conversation, connection_id=uuid.uuid4())
            Handoff.all_tenants.filter(pk=made.pk).update(created_at=when + timedelta(minutes=1))


@pytest.fixture
def stats(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> KnowledgeBase:
    """returns (en, de) and shipping (en) published; answers over the last days rated and handed off."""
    with tenant_context(tenant_a):
        publish(kb, "returns", "en", "Returns", "# Returns\n\n30 days.", alice=alice, reviewer=reviewer)
        publish(kb, "returns", "de", "Rückgabe", "# Rückgabe\n\n30 Tage.", alice=alice, reviewer=reviewer)
        publish(kb, "shipping", "en", "Shipping", "# Shipping\n\n2-5 days.", alice=alice, reviewer=reviewer)
    # returns/en: 4 answers: 1 up, 1 down, 1 handed off, 1 down and handed off -> poor 3 of 4.
    answer(tenant_a, kb, [("returns", "en")], rating=5)
    answer(tenant_a, kb, [("returns", "en")], rating=1)
    answer(tenant_a, kb, [("returns", "en")], handoff=True)
    answer(tenant_a, kb, [("returns", "en"), ("shipping", "en")], rating=1, handoff=True)
    # returns/de: 2 answers, both rated up; one citation without kb_id (before issue 21), matched by its URL.
    answer(tenant_a, kb, [("returns", "de")], rating=5)
    answer(tenant_a, kb, [("returns", "de")], rating=5, legacy=True)
    # Outside the 30-day window (inside 90): shipping/en rated up.
    answer(tenant_a, kb, [("shipping", "en")], rating=5, ago=timedelta(days=40))
    # Another knowledge base's citation of the same key: never counted here.
    answer(tenant_a, uuid.uuid4(), [("returns", "en")], rating=1)
    return kb


def test_the_kb_page_shows_each_article_and_locale_worst_first(
    alice_client: Client, tenant_a: Tenant, stats: KnowledgeBase
) -> None:
    response = alice_client.get(kb_url(tenant_a, stats))
    assert response.status_code == 200
    table = rows(response)
    assert table[("returns", "en")] == {
        "citations": "4",
        "positive": "1",
        "negative": "2",
        "handoffs": "2",
        "poor": "75 % (3)",
    }
    assert table[("returns", "de")] == {
        "citations": "2",
        "positive": "2",
        "negative": "0",
        "handoffs": "0",
        "poor": "0 % (0)",
    }
    assert table[("shipping", "en")]["citations"] == "1" and table[("shipping", "en")]["poor"] == "100 % (1)"
    # Worst first: shipping/en (100 %), returns/en (75 %), returns/de (0 %).
    assert list(table) == [("shipping", "en"), ("returns", "en"), ("returns", "de")]
    assert "Article quality" in page_text(response) and "Rückgabe" in page_text(response)

    by_citations = rows(alice_client.get(kb_url(tenant_a, stats) + "?qsort=citations"))
    assert list(by_citations) == [("returns", "en"), ("returns", "de"), ("shipping", "en")]
    longer = rows(alice_client.get(kb_url(tenant_a, stats) + "?qdays=90"))
    assert longer[("shipping", "en")]["citations"] == "2" and longer[("shipping", "en")]["positive"] == "1"
    # A bad window or order is the default, never an error.
    odd = alice_client.get(kb_url(tenant_a, stats) + "?qdays=abc&qsort=%3Cscript%3E&qpage=-4")
    assert odd.status_code == 200 and list(rows(odd)) == list(table)


def test_the_article_page_shows_its_locales(
    alice_client: Client, tenant_a: Tenant, stats: KnowledgeBase
) -> None:
    response = alice_client.get(article_url(tenant_a, stats, "returns"))
    assert response.status_code == 200
    table = rows(response)
    assert set(table) == {("", "en"), ("", "de")}
    assert table[("", "en")]["citations"] == "4" and table[("", "de")]["positive"] == "2"
    empty = alice_client.get(article_url(tenant_a, stats, "shipping") + "?qdays=7&locale=en")
    assert rows(empty) == {("", "en"): rows(empty)[("", "en")]}
    assert rows(empty)[("", "en")]["citations"] == "1"


def test_a_localization_editor_sees_only_their_locales(
    client: Client, tenant_a: Tenant, stats: KnowledgeBase, editor: Any
) -> None:
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
    login_verified(client, editor)
    assert list(rows(client.get(kb_url(tenant_a, stats)))) == [("returns", "de")]
    assert set(rows(client.get(article_url(tenant_a, stats, "returns")))) == {("", "de")}


def test_empty_state_and_pagination(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = alice_client.get(kb_url(tenant_a, kb))
    assert empty.status_code == 200 and not rows(empty)
    assert "No cited articles in this window" in page_text(empty)
    monkeypatch.setattr("apps.knowledge.insights_views.ROWS_PER_PAGE", 2)
    for n in range(5):
        answer(tenant_a, kb, [(f"article-{n}", "en")])
    first = alice_client.get(kb_url(tenant_a, kb) + "?qsort=article")
    assert list(rows(first)) == [("article-0", "en"), ("article-1", "en")]
    assert "Page 1 of 3" in page_text(first)
    last = alice_client.get(kb_url(tenant_a, kb) + "?qsort=article&qpage=3")
    assert list(rows(last)) == [("article-4", "en")]


def test_other_tenants_are_404_and_never_counted(
    alice_client: Client,
    tenant_a: Tenant,
    tenant_b: Tenant,
    region_eu: Region,
    stats: KnowledgeBase,
    charlie: Any,
) -> None:
    client = Client()
    login_verified(client, charlie)
    assert client.get(kb_url(tenant_a, stats)).status_code == 404
    assert client.get(article_url(tenant_a, stats, "returns")).status_code == 404
    assert client.get(kb_url(tenant_b, stats)).status_code in (403, 404)
    # A tenant in the same region database whose answers claim A's knowledge base id: not A's numbers.
    neighbour = TenantFactory.create(slug="tenant-c", name="Tenant C", home_region=region_eu)
    for _n in range(3):
        answer(neighbour, stats, [("returns", "en")], rating=1, handoff=True)
    assert rows(alice_client.get(kb_url(tenant_a, stats)))[("returns", "en")]["citations"] == "4"
    with tenant_context(neighbour):
        counted = article_quality(tenant=neighbour, kb=stats)
    assert [(r.article_key, r.citations) for r in counted] == [("returns", 3)]


def test_the_pages_cost_a_fixed_number_of_queries(
    alice_client: Client, tenant_a: Tenant, stats: KnowledgeBase
) -> None:
    def measured(url: str) -> int:
        with (
            CaptureQueriesContext(connections["default"]) as control,
            CaptureQueriesContext(connections["region_eu"]) as region,
        ):
            assert alice_client.get(url).status_code == 200
        return len(control) + len(region)

    pages = [kb_url(tenant_a, stats), article_url(tenant_a, stats, "returns")]
    for url in pages:
        measured(url)  # warm
    before = [measured(url) for url in pages]
    for n in range(10):
        answer(tenant_a, stats, [("returns", "en"), (f"more-{n}", "de")], rating=1, handoff=True)
    assert [measured(url) for url in pages] == before


def test_a_real_answer_names_its_knowledge_base_and_counts(
    alice_client: Client,
    api_client: Client,
    api_key_a: IssuedKey,
    channel_a: Channel,
    tenant_a: Tenant,
    kb: KnowledgeBase,
    alice: Any,
    reviewer: Any,
    run_tasks: Any,
) -> None:
    with tenant_context(tenant_a):
        publish(
            kb,
            "gift-cards",
            "en",
            "Gift cards",
            "# Gift cards\n\nGift cards never expire. Use them in the online shop and in every store.",
            alice=alice,
            reviewer=reviewer,
        )
    reply = ask(api_client, api_key_a, "do gift cards expire?", locale="en")
    assert [c["article_key"] for c in reply["citations"]] == ["gift-cards"], reply
    assert set(reply["citations"][0]) == {
        "article_key",
        "title",
        "locale",
        "url",
    }  # the API's shape is unchanged
    with tenant_context(tenant_a):
        stored = Message.objects.filter(role=Role.ASSISTANT).latest("id").citations
    assert stored[0]["kb_id"] == str(kb.pk)
    assert rows(alice_client.get(kb_url(tenant_a, kb)))[("gift-cards", "en")]["citations"] == "1"
