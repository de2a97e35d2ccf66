"""Search (the chat's retrieval, rate limited per client address) and the page cache per knowledge version."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from django.db import connections
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from apps.core.context import tenant_context
from apps.knowledge.indexing import translations_index
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import translation_publish, translation_save, translation_submit
from apps.tenants.models import Tenant
from tests.helpcenter.helpers import SITE, html

pytestmark = pytest.mark.django_db


@contextmanager
def all_queries() -> Iterator[list[CaptureQueriesContext]]:
    """Capture the queries of every database (control and regions)."""
    with ExitStack() as stack:
        yield [stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in connections]


def count(captured: list[CaptureQueriesContext]) -> int:
    return sum(len(c.captured_queries) for c in captured)


def test_search_finds_published_articles_in_the_visitor_language(
    client: Client, hc_kb: KnowledgeBase
) -> None:
    response = client.get(f"{SITE}/de/search/", {"q": "Wie lange habe ich Zeit für eine Rückgabe?"})
    assert response.status_code == 200
    page = html(response)
    assert f'href="{SITE}/de/articles/returns-policy/"' in page
    assert response["X-Robots-Tag"] == "noindex"
    assert "secret" not in page.lower()


def test_search_without_query_shows_the_form(client: Client, hc_kb: KnowledgeBase) -> None:
    page = html(client.get(f"{SITE}/en/search/"))
    assert '<label for="hc-q">' in page and "<ol" not in page


def test_search_is_rate_limited_per_client_address(client: Client, hc_kb: KnowledgeBase) -> None:
    with override_settings(HUB_HELPCENTER_SEARCH_RATE=(2, 60)):
        for _ in range(2):
            assert client.get(f"{SITE}/en/search/", {"q": "returns"}).status_code == 200
        refused = client.get(f"{SITE}/en/search/", {"q": "returns"})
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) >= 1
        assert '<html lang="en">' in html(refused)
        other = client.get(f"{SITE}/en/search/", {"q": "returns"}, REMOTE_ADDR="192.0.2.7")
        assert other.status_code == 200  # another address has its own bucket


def test_oversized_and_odd_queries_never_fail(client: Client, hc_kb: KnowledgeBase) -> None:
    for query in ("x" * 10_000, "<script>alert(1)</script>", "' OR 1=1 --", "\x00"):
        response = client.get(f"{SITE}/en/search/", {"q": query})
        assert response.status_code in (200, 400), query
        assert "<script>alert" not in html(response)


def test_cached_article_and_home_cost_no_query(client: Client, hc_kb: KnowledgeBase) -> None:
    for path in ("/de/articles/returns-policy/", "/de/"):
        first = client.get(SITE + path)
        with all_queries() as captured:
            again = client.get(SITE + path)
        assert again.status_code == 200
        assert again.content == first.content
        assert count(captured) == 0, [q["sql"] for c in captured for q in c.captured_queries]


def test_publishing_invalidates_the_cached_page(
    client: Client, hc_kb: KnowledgeBase, tenant_a: Tenant, alice: object
) -> None:
    assert "Gift cards v2" not in html(client.get(f"{SITE}/en/articles/gift-cards/"))
    with tenant_context(tenant_a):
        text = translation_save(
            kb=hc_kb, key="gift-cards", locale="en", title="Gift cards v2", body="New.", author=alice
        )
        translation_submit(translation=text)
        translation_publish(translation=text, actor=None)
        translations_index(translation_ids=[text.pk])  # what the worker does after the commit
    assert "Gift cards v2" in html(client.get(f"{SITE}/en/articles/gift-cards/"))


def test_regions_are_cached_apart(client: Client, hc_kb: KnowledgeBase) -> None:
    generic = html(client.get(f"{SITE}/en/articles/returns-policy/"))
    eu = html(client.get(f"{SITE}/en/articles/returns-policy/?region=eu"))
    assert 'data-region=""' in generic and 'data-region="eu"' in eu
