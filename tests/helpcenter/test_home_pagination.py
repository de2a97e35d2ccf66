"""The home page a page at a time: order, ?page= (the console lists' convention), links, cache, tenants."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from apps.knowledge.models import KnowledgeBase
from apps.tenants.models import Tenant
from tests.helpcenter.helpers import SITE, home_titles, html, publish

pytestmark = pytest.mark.django_db

#: The demo's 18 English articles by title: what page 1 and page 2 of 10 list.
PAGE_1 = [
    "Cancel an order",
    "Change your email address",
    "Delete your account",
    "Delivery times",
    "Download an invoice",
    "Exchange for a different size",
    "Gift cards",
    "How to make a warranty claim",
    "How to print a return shipping label",
    "My payment was declined",
]
PAGE_2 = [
    "Payment methods",
    "Reset your password",
    "Returns policy",
    "Shipping abroad",
    "Shipping costs",
    "Track your order",
    "Warranty coverage",
    "When will I get my refund?",
]


@pytest.fixture(autouse=True)
def _ten_per_page(settings: Any) -> None:
    settings.HUB_HELPCENTER_PAGE_SIZE = 10


def page_keys() -> int:
    redis = cache._cache.get_client(write=False)  # type: ignore[attr-defined]
    return len(list(redis.scan_iter(match="*helpcenter:page:*", count=1000)))


def test_pages_list_the_articles_in_order_with_prev_and_next(client: Client, hc_kb: KnowledgeBase) -> None:
    first = client.get(f"{SITE}/en/")
    assert first.status_code == 200
    assert home_titles(first) == PAGE_1
    page = html(first)
    assert "Page 1 of 2" in page
    assert f'<a href="{SITE}/en/?page=2" rel="next">' in page and 'rel="prev"' not in page
    assert f'<link rel="canonical" href="http://testserver{SITE}/en/">' in page

    second = client.get(f"{SITE}/en/", {"page": "2"})
    assert home_titles(second) == PAGE_2
    page = html(second)
    assert "Page 2 of 2" in page
    assert f'<a href="{SITE}/en/" rel="prev">' in page and 'rel="next"' not in page
    assert f'<link rel="canonical" href="http://testserver{SITE}/en/?page=2">' in page
    assert "secret" not in (html(first) + page).lower()  # drafts, reviews and rejections stay out


def test_one_page_shows_no_page_links(client: Client, hc_kb: KnowledgeBase, settings: Any) -> None:
    settings.HUB_HELPCENTER_PAGE_SIZE = 50
    response = client.get(f"{SITE}/en/")
    assert home_titles(response) == PAGE_1 + PAGE_2
    assert "hc-pagination" not in html(response)


def test_bad_page_numbers_show_a_page_and_are_not_cached(client: Client, hc_kb: KnowledgeBase) -> None:
    client.get(f"{SITE}/en/")
    client.get(f"{SITE}/en/", {"page": "2"})
    cached = page_keys()
    assert cached == 2
    for bad in ("abc", "", "1.5", "x" * 40, "<b>"):
        response = client.get(f"{SITE}/en/", {"page": bad})
        assert response.status_code == 200, bad
        assert home_titles(response) == PAGE_1, bad  # not a number: the first page
    for past in ("3", "99", "99999999999", "0", "-1"):
        response = client.get(f"{SITE}/en/", {"page": past})
        assert response.status_code == 200, past
        assert home_titles(response) == PAGE_2, past  # out of range: the last page, as the console's lists
        assert f'<link rel="canonical" href="http://testserver{SITE}/en/?page=2">' in html(response)
    assert page_keys() == cached  # made-up page numbers never fill Redis


def test_page_links_keep_the_region_choice(client: Client, hc_kb: KnowledgeBase) -> None:
    page = html(client.get(f"{SITE}/en/", {"region": "eu"}))
    assert f'<a href="{SITE}/en/?region=eu&amp;page=2" rel="next">' in page
    page = html(client.get(f"{SITE}/en/", {"region": "eu", "page": "2"}))
    assert f'<a href="{SITE}/en/?region=eu" rel="prev">' in page


def test_a_category_stays_together_and_comes_first(
    client: Client, hc_kb: KnowledgeBase, tenant_a: Tenant
) -> None:
    publish(hc_kb, tenant_a, key="zz-loyalty", title="Zzz loyalty points", tags=["Billing"])
    publish(hc_kb, tenant_a, key="aa-vouchers", title="Aaa vouchers", tags=["Billing", "Offers"])
    response = client.get(f"{SITE}/en/")
    titles = home_titles(response)
    assert titles[:2] == ["Aaa vouchers", "Zzz loyalty points"]  # the category, then the untagged rest
    assert titles[2:] == PAGE_1[:8]
    page = html(response)
    assert page.index(">Billing</h2>") < page.index(">Other articles</h2>")
    assert home_titles(client.get(f"{SITE}/en/", {"page": "2"})) == PAGE_1[8:] + PAGE_2


def test_another_tenants_help_center_never_lists_these_articles(
    client: Client, hc_kb: KnowledgeBase, hc_kb_b: KnowledgeBase, tenant_a: Tenant
) -> None:
    publish(hc_kb, tenant_a, key="a-only", title="Tenant A only article")
    assert "Tenant A only article" in home_titles(client.get(f"{SITE}/en/", {"page": "2"}))
    for number in ("1", "2", "3"):
        response = client.get("/help/tenant-b/help/en/", {"page": number})
        assert response.status_code == 200
        assert "Tenant A only article" not in html(response)
    assert client.get("/help/tenant-b/help/en/articles/a-only/").status_code == 404
    # A handle tenant B does not have: 404 on every page.
    assert client.get("/help/tenant-b/nope/en/", {"page": "2"}).status_code == 404
