"""The knowledge console: knowledge bases with coverage, the article matrix, article pages (citation
targets), the review queue with four-eyes review, the search preview, and who may see what."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Status, Translation
from apps.knowledge.selectors import kbs_coverage, knowledge_search
from apps.knowledge.services import kb_create, translation_publish, translation_save, translation_submit
from apps.tenants.models import Membership, Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db

BODY = "# Returns\n\nYou can return items within 30 days.\n\n## Refunds\n\nRefunds take 5 days."


def text(response: Any) -> str:
    """The page's text with tags and runs of white space collapsed, for value assertions."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(f"knowledge:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


def save(kb: KnowledgeBase, key: str, locale: str, *, author: Any, region: str = "", body: str = BODY) -> Any:
    return translation_save(
        kb=kb, key=key, locale=locale, region=region, title=f"{key} {locale}", body=body, author=author
    )


def publish(t: Translation, *, reviewer: Any) -> Translation:
    translation_submit(translation=t)
    return translation_publish(translation=t, actor=reviewer)


@pytest.fixture
def content(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> dict[str, Translation]:
    """returns: en published then edited (so de needs an update), de published, de/EU draft;
    shipping: en in review (written by alice); fr and es: nothing."""
    with tenant_context(tenant_a):
        en = publish(save(kb, "returns", "en", author=alice), reviewer=reviewer)
        de = publish(save(kb, "returns", "de", author=alice), reviewer=reviewer)
        de_eu = save(kb, "returns", "de", region="EU", author=alice)
        en = save(kb, "returns", "en", author=alice, body=BODY + "\n\nUpdated.")
        shipping = translation_submit(translation=save(kb, "shipping", "en", author=alice))
    return {"en": en, "de": de, "de_eu": de_eu, "shipping": shipping}


def limit(user: Any, tenant: Tenant, *, locales: list[str], regions: list[str] | None = None) -> None:
    Membership.objects.filter(user=user, tenant=tenant).update(locales=locales, regions=regions or [])


def test_navigation_opens_the_knowledge_bases(alice_client: Client, tenant_a: Tenant) -> None:
    response = alice_client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
    assert f'href="{url("kb-list", tenant_a)}"' in response.content.decode()
    assert url("kb-list", tenant_a) == "/t/tenant-a/knowledge/"


def test_kb_list(alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any) -> None:
    response = alice_client.get(url("kb-list", tenant_a))
    assert response.status_code == 200
    page = text(response)
    assert "Help center" in page and "en, de, fr, es, ja" in page and "EU, US" in page
    assert re.search(r'class="article-count">2<', response.content.decode())
    assert url("kb-detail", tenant_a, kb_id=kb.pk) in response.content.decode()


def test_kb_list_empty(alice_client: Client, tenant_a: Tenant) -> None:
    assert "No knowledge bases yet" in text(alice_client.get(url("kb-list", tenant_a)))


def coverage_row(page: str, locale: str) -> list[int]:
    match = re.search(rf"{locale}(?: \(source\))? (\d+) (\d+) (\d+) (\d+)", page)
    assert match, locale
    return [int(n) for n in match.groups()]


def test_kb_detail_coverage_and_article_matrix(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any
) -> None:
    response = alice_client.get(url("kb-detail", tenant_a, kb_id=kb.pk))
    assert response.status_code == 200
    page = text(response)
    # published, needs update, in progress, missing
    assert coverage_row(page, "en") == [1, 0, 1, 0]
    assert coverage_row(page, "de") == [0, 1, 0, 1]
    assert coverage_row(page, "fr") == [0, 0, 0, 2]
    html = response.content.decode()
    returns = html[html.index('data-key="returns"') : html.index('data-key="shipping"')]
    de_cell = re.search(r'data-locale="de">(.*?)</td>', returns, re.S).group(1)  # type: ignore[union-attr]
    assert "Published" in de_cell and "Needs update" in de_cell and "EU" in de_cell and "Draft" in de_cell
    fr_cell = re.search(r'data-locale="fr">(.*?)</td>', returns, re.S).group(1)  # type: ignore[union-attr]
    assert "Missing" in fr_cell
    shipping = html[html.index('data-key="shipping"') :]
    assert "In review" in re.search(r'data-locale="en">(.*?)</td>', shipping, re.S).group(1)  # type: ignore[union-attr]


def test_unknown_kb_or_article_is_404(alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase) -> None:
    assert (
        alice_client.get(url("kb-detail", tenant_a, kb_id="00000000-0000-0000-0000-000000000000")).status_code
        == 404
    )
    assert alice_client.get(url("article", tenant_a, kb_id=kb.pk, key="nope")).status_code == 404


def test_article_page_is_the_citation_target(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any
) -> None:
    path = url("article", tenant_a, kb_id=kb.pk, key="returns")
    assert path == f"/t/tenant-a/knowledge/{kb.pk}/articles/returns/"
    response = alice_client.get(path, {"locale": "de", "region": "EU"})
    assert response.status_code == 200
    page = text(response)
    assert "Text in de · variant for EU" in page and "Working copy" in page and "returns de" in page
    # The published German text, with its revision.
    page = text(alice_client.get(path, {"locale": "de"}))
    assert "Text in de" in page and "variant for" not in page
    assert "Published text (what the chat answers from)" in page and "#1" in page
    assert "You can return items within 30 days." in page
    # The source text was edited after publishing: the published text and the working copy differ.
    page = text(alice_client.get(path))
    assert "Text in en" in page and "Updated." in page and "Working copy" in page


def test_editor_limited_to_locales_and_regions(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any, editor: Any
) -> None:
    limit(editor, tenant_a, locales=["de"], regions=["US"])
    login_verified(client, editor)
    response = client.get(url("kb-detail", tenant_a, kb_id=kb.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-locale="de"' in html and 'data-locale="en"' not in html and 'data-locale="fr"' not in html
    assert "<strong>EU</strong>" not in html  # the EU variant is outside lena's regions
    path = url("article", tenant_a, kb_id=kb.pk, key="returns")
    assert client.get(path, {"locale": "en"}).status_code == 403
    assert client.get(path, {"locale": "de", "region": "EU"}).status_code == 403
    page = text(client.get(path))
    assert "Text in de" in page and "Text in en" not in page
    # The queue holds only English texts: nothing for lena, and she may not approve one.
    assert "Nothing to review" in text(client.get(url("review-queue", tenant_a)))
    response = client.post(url("review-approve", tenant_a, pk=content["shipping"].pk))
    assert response.status_code == 403


def test_review_queue_and_four_eyes(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any, alice: Any, reviewer: Any
) -> None:
    shipping = content["shipping"]
    login_verified(client, alice)
    response = client.get(url("review-queue", tenant_a))
    html = response.content.decode()
    assert response.status_code == 200 and html.count('class="review"') == 1
    assert "shipping en" in text(response) and url("review-approve", tenant_a, pk=shipping.pk) in html
    # alice wrote it: four-eyes review refuses, shown as a message, nothing changes.
    response = client.post(url("review-approve", tenant_a, pk=shipping.pk), follow=True)
    assert "someone else has to approve it" in text(response)
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=shipping.pk).status == Status.IN_REVIEW
    login_verified(client, reviewer)
    response = client.post(url("review-approve", tenant_a, pk=shipping.pk), follow=True)
    assert "“shipping en” (en) is published." in text(response)
    assert "Nothing to review" in text(response)
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=shipping.pk).status == Status.PUBLISHED
    # Approving again is a conflict, reported as a message.
    response = client.post(url("review-approve", tenant_a, pk=shipping.pk), follow=True)
    assert "already published" in text(response) or "submit the text for review first" in text(response)


def test_search_preview_shows_hits_with_citations(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any, run_tasks: Any
) -> None:
    with tenant_context(tenant_a):
        publish(save(kb, "returns", "en", author=alice), reviewer=reviewer)
        hits = knowledge_search(tenant=tenant_a, query="How do I return items?", locale="de", region="EU")
    assert hits
    response = alice_client.get(url("search-preview", tenant_a))
    assert response.status_code == 200 and "Results" not in text(response)
    response = alice_client.get(
        url("search-preview", tenant_a),
        {"question": "How do I return items?", "locale": "de", "region": "eu"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="{hits[0].citation_url}"' in html and 'data-key="returns"' in html
    assert hits[0].citation_url.startswith(url("article", tenant_a, kb_id=kb.pk, key="returns"))
    assert alice_client.get(hits[0].citation_url).status_code == 200
    assert alice_client.get(url("search-preview", tenant_a), {"locale": "de"}).status_code == 400


def test_viewer_gets_403(client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any, bob: Any) -> None:
    login_verified(client, bob)
    for path in (
        url("kb-list", tenant_a),
        url("kb-detail", tenant_a, kb_id=kb.pk),
        url("article", tenant_a, kb_id=kb.pk, key="returns"),
        url("review-queue", tenant_a),
        url("search-preview", tenant_a),
    ):
        assert client.get(path).status_code == 403, path
    assert client.post(url("review-approve", tenant_a, pk=content["shipping"].pk)).status_code == 403
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=content["shipping"].pk).status == Status.IN_REVIEW


def test_connector_manager_may_not_approve(
    client: Client, tenant_a: Tenant, content: Any, alice: Any
) -> None:
    user = UserFactory.create(username="connor")
    membership_add(tenant=tenant_a, user=user, role=Role.CONNECTOR_MANAGER)
    login_verified(client, user)
    assert client.post(url("review-approve", tenant_a, pk=content["shipping"].pk)).status_code == 403


def test_charlie_gets_404(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any, charlie: Any
) -> None:
    login_verified(client, charlie)
    for path in (
        url("kb-list", tenant_a),
        url("kb-detail", tenant_a, kb_id=kb.pk),
        url("article", tenant_a, kb_id=kb.pk, key="returns"),
        url("review-queue", tenant_a),
    ):
        response = client.get(path)
        assert response.status_code == 404 and b"Help center" not in response.content, path
    assert client.post(url("review-approve", tenant_a, pk=content["shipping"].pk)).status_code == 404


def page_queries(client: Client, path: str) -> int:
    with (
        CaptureQueriesContext(connections["default"]) as default,
        CaptureQueriesContext(connections["region_eu"]) as region,
    ):
        assert client.get(path).status_code == 200
    return len(default.captured_queries) + len(region.captured_queries)


def test_pages_do_not_grow_queries_with_content(
    alice_client: Client,
    tenant_a: Tenant,
    kb: KnowledgeBase,
    content: Any,
    alice: Any,
    django_assert_max_num_queries: Any,
) -> None:
    paths = [
        url("kb-list", tenant_a),
        url("kb-detail", tenant_a, kb_id=kb.pk),
        url("article", tenant_a, kb_id=kb.pk, key="returns"),
        url("review-queue", tenant_a),
    ]
    before = [page_queries(alice_client, path) for path in paths]
    with tenant_context(tenant_a):
        for n in range(8):
            for locale in ("en", "de", "fr"):
                t = save(kb, f"more-{n}", locale, author=alice)
                translation_submit(translation=t)
            save(kb, "returns", "fr", region="US" if n % 2 else "EU", author=alice)
    assert [page_queries(alice_client, path) for path in paths] == before
    for path in paths:
        with django_assert_max_num_queries(12, connection=connections["region_eu"]):
            alice_client.get(path)


def compact_coverage(html: str, kb: KnowledgeBase) -> dict[str, str]:
    row = re.search(rf'<tr class="kb" data-kb="{kb.pk}">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]
    return dict(re.findall(r'data-locale="([^"]+)"[^>]*>[^<]*<span class="n">([\d/]+)</span>', row))


def test_kb_list_shows_coverage_per_locale_in_constant_queries(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, content: Any, alice: Any, editor: Any
) -> None:
    path = url("kb-list", tenant_a)
    # published / needs update / missing
    assert compact_coverage(alice_client.get(path).content.decode(), kb) == {
        "en": "1/0/0",
        "de": "0/1/1",
        "fr": "0/0/2",
        "es": "0/0/2",
        "ja": "0/0/2",
    }
    before = page_queries(alice_client, path)
    with tenant_context(tenant_a):
        for n in range(3):
            other = kb_create(tenant=tenant_a, name=f"KB {n}", source_locale="de", enabled_locales=["en"])
            for m in range(3):
                save(other, f"a{m}", "de", author=alice)
    html = alice_client.get(path).content.decode()
    assert page_queries(alice_client, path) == before
    assert compact_coverage(html, other) == {"de": "0/0/0", "en": "0/0/3"}  # de: 3 drafts in progress
    assert 'title="0 published, 0 need an update, 3 in progress, 0 missing"' in html
    # An editor limited to German sees German coverage only.
    limit(editor, tenant_a, locales=["de"])
    login_verified(alice_client, editor)
    assert compact_coverage(alice_client.get(path).content.decode(), kb) == {"de": "0/1/1"}


def test_kbs_coverage_is_two_queries(
    tenant_a: Tenant, kb: KnowledgeBase, content: Any, django_assert_num_queries: Any
) -> None:
    with tenant_context(tenant_a):
        kbs = list(KnowledgeBase.objects.all())
        with django_assert_num_queries(2, connection=connections["region_eu"]):
            coverage = kbs_coverage(kbs=kbs)
        assert [(c.locale, c.published, c.needs_update, c.in_progress, c.missing) for c in coverage[kb.pk]][
            :2
        ] == [
            ("en", 1, 0, 1, 0),
            ("de", 0, 1, 0, 1),
        ]
        assert kbs_coverage(kbs=[]) == {}
