"""The help center while Redis is down or stalled: pages from Postgres, fast, counted; search's rate limit
fails open, then closed (the chat's policy, issue 15). Redis only saves reads here, it is not needed."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings

from apps.core.buckets import redis_client
from apps.helpcenter.models import HelpCenterDomain
from apps.knowledge.models import KnowledgeBase
from apps.observability import metrics
from apps.tenants.models import Tenant
from tests.chaos.faults import StallProxy
from tests.helpcenter.helpers import HOST, HOSTS, SITE, home_titles, html, publish

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_seen_up")]

#: What one page may take without Redis: one Redis timeout at most (then this process skips Redis), plus
#: rendering from the database on a busy machine.
BOUND_S = 2 * 0.25 + 1.5


def degraded(feature: str) -> float:
    return float(metrics.DEGRADED.labels(dependency="redis", feature=feature)._value.get())


def timed_get(client: Client, path: str, **extra: Any) -> Any:
    started = time.monotonic()
    response = client.get(path, **extra)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, (path, elapsed)
    return response


def assert_pages_from_the_database(client: Client, prefix: str = SITE, **extra: Any) -> None:
    home = timed_get(client, f"{prefix}/en/", **extra)
    assert home.status_code == 200, home.content[:300]
    assert "Cancel an order" in home_titles(home) and "Returns policy" in home_titles(home)
    assert ">Billing</h2>" in html(home)  # the category section
    article = timed_get(client, f"{prefix}/de/articles/returns-policy/", **extra)
    assert article.status_code == 200
    assert "<h1>Rückgaberichtlinie</h1>" in html(article) and 'data-locale="de"' in html(article)
    search = timed_get(
        client, f"{prefix}/de/search/?q=Wie+lange+habe+ich+Zeit+f%C3%BCr+eine+R%C3%BCckgabe", **extra
    )
    assert search.status_code == 200
    assert f'href="{prefix}/de/articles/returns-policy/"' in html(search)
    for path in ("/", "/sitemap.xml", "/en/sitemap.xml", "/robots.txt"):
        assert timed_get(client, prefix + path, **extra).status_code in (200, 302), path
    assert timed_get(client, f"{prefix}/en/articles/secret-draft/", **extra).status_code == 404


@pytest.fixture
def billing(hc_kb: KnowledgeBase, tenant_a: Tenant) -> KnowledgeBase:
    """The demo help center with one article in a "Billing" category."""
    publish(hc_kb, tenant_a, key="vouchers", title="Vouchers", tags=["Billing"])
    return hc_kb


def test_with_redis_dead_every_page_is_served_from_postgres_and_counted(
    billing: KnowledgeBase, redis_down: None
) -> None:
    pages, limits = degraded("helpcenter"), degraded("rate_limit")
    assert_pages_from_the_database(Client(raise_request_exception=False))
    assert degraded("helpcenter") > pages
    assert degraded("rate_limit") == limits + 1  # the one search with a query, let through


def test_with_redis_stalled_pages_answer_within_one_timeout(billing: KnowledgeBase, settings: Any) -> None:
    proxy = StallProxy(int(urlsplit(settings.REDIS_URL).port or 6379))
    try:
        url = proxy.url_for(settings.REDIS_URL)
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
        settings.REDIS_URL = url
        redis_client.cache_clear()
        client = Client(raise_request_exception=False)
        assert_pages_from_the_database(client)  # through the proxy: the pages are cached now
        proxy.stall()
        pages = degraded("helpcenter")
        assert_pages_from_the_database(client)
        assert degraded("helpcenter") > pages
    finally:
        proxy.close()


@override_settings(ALLOWED_HOSTS=HOSTS)
def test_a_custom_domain_is_served_without_redis(
    billing: KnowledgeBase, domain_a: HelpCenterDomain, redis_down: None
) -> None:
    assert_pages_from_the_database(Client(raise_request_exception=False), prefix="", HTTP_HOST=HOST)


def test_another_tenant_stays_apart_without_redis(
    billing: KnowledgeBase, hc_kb_b: KnowledgeBase, redis_down: None
) -> None:
    client = Client(raise_request_exception=False)
    other = client.get("/help/tenant-b/help/en/")
    assert other.status_code == 200 and "Cancel an order" in home_titles(other)
    assert "Vouchers" not in html(other)
    assert client.get("/help/tenant-b/help/en/articles/vouchers/").status_code == 404
    assert client.get("/help/tenant-c/help/en/").status_code == 404  # no such tenant


@pytest.mark.parametrize("host", ["testserver", HOST])
@override_settings(ALLOWED_HOSTS=HOSTS)
def test_search_limits_fail_closed_after_the_window(
    host: str, billing: KnowledgeBase, domain_a: HelpCenterDomain, redis_down: None, settings: Any
) -> None:
    prefix = SITE if host == "testserver" else ""
    client = Client(raise_request_exception=False, HTTP_HOST=host)
    assert client.get(f"{prefix}/en/search/?q=returns").status_code == 200  # within the window: open
    settings.HUB_CHAT_RATE_FAIL_OPEN_SECONDS = 0  # the outage has outlasted it
    refused = client.get(f"{prefix}/en/search/?q=returns")
    assert refused.status_code == 503
    assert refused["Retry-After"] == str(settings.HUB_RETRY_AFTER_SECONDS)
    assert "Traceback" not in html(refused)
    # What needs no rate limit keeps answering: the form, the pages.
    assert client.get(f"{prefix}/en/search/").status_code == 200
    assert client.get(f"{prefix}/en/").status_code == 200
