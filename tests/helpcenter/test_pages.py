"""The public pages: published text only, locales and regions, fallback, hreflang, canonical, a11y."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Translation
from apps.knowledge.services import kb_update, translation_archive
from apps.tenants.models import Tenant
from tests.helpcenter.helpers import SITE, html

pytestmark = pytest.mark.django_db


def test_article_page_shows_published_text_rendered_and_sanitised(
    client: Client, hc_kb: KnowledgeBase
) -> None:
    response = client.get(f"{SITE}/en/articles/returns-policy/")
    assert response.status_code == 200
    page = html(response)
    assert '<html lang="en">' in page
    assert "<h1>Returns policy</h1>" in page
    assert "<h2>Returns policy</h2>" in page  # the body's own h1 one level down
    assert "<h3>Exceptions</h3>" in page
    assert '<main id="main"' in page and 'href="#main"' in page  # landmark and skip link
    assert '<label for="hc-q">' in page and 'role="search"' in page
    assert "csrfmiddlewaretoken" not in page
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert response["Content-Language"] == "en"


def test_no_login_needed_and_no_console_chrome(client: Client, hc_kb: KnowledgeBase) -> None:
    page = html(client.get(f"{SITE}/de/"))
    assert 'lang="de"' in page
    assert "/t/tenant-a/" not in page and "logout" not in page.lower()


def test_hreflang_alternates_canonical_and_x_default(client: Client, hc_kb: KnowledgeBase) -> None:
    page = html(client.get(f"{SITE}/de/articles/refund-timing/"))
    alternates = dict(re.findall(r'<link rel="alternate" hreflang="([^"]+)" href="([^"]+)">', page))
    assert set(alternates) == {"en", "de", "fr", "x-default"}  # refund-timing: en, de, fr only
    assert alternates["fr"] == "http://testserver/help/tenant-a/help/fr/articles/refund-timing/"
    assert alternates["x-default"] == alternates["en"]
    assert (
        '<link rel="canonical" href="http://testserver/help/tenant-a/help/de/articles/refund-timing/">'
        in page
    )


def test_locale_fallback_is_said_and_marked_with_its_language(client: Client, hc_kb: KnowledgeBase) -> None:
    # gift-cards is English only: the German page says so and marks the English block lang="en".
    page = html(client.get(f"{SITE}/de/articles/gift-cards/"))
    assert '<html lang="de">' in page
    assert "nicht auf Deutsch verfügbar" in page or "not available in" in page
    assert '<article lang="en"' in page


def test_region_variant_by_explicit_choice_and_cookie(client: Client, hc_kb: KnowledgeBase) -> None:
    generic = html(client.get(f"{SITE}/de/articles/returns-policy/"))
    assert 'data-region=""' in generic  # no guess: the generic text without a choice
    response = client.get(f"{SITE}/region/?region=eu&next={SITE}/de/articles/returns-policy/")
    assert response.status_code == 302
    assert response["Location"] == f"{SITE}/de/articles/returns-policy/"
    cookie = response.cookies["hc_region"]
    assert cookie.value == "eu" and cookie["path"] == f"{SITE}/"
    eu = html(client.get(f"{SITE}/de/articles/returns-policy/"))
    assert 'data-region="eu"' in eu and "14" in eu
    # A region the tenant does not serve (or garbage) is the generic text, never another region's.
    client.cookies["hc_region"] = "apac"
    assert 'data-region=""' in html(client.get(f"{SITE}/de/articles/returns-policy/"))


def test_citation_link_region_parameter_is_explicit(client: Client, hc_kb: KnowledgeBase) -> None:
    response = client.get(f"{SITE}/en/articles/payment-methods/?region=us")
    assert 'data-region="us"' in html(response)
    assert response.cookies["hc_region"].value == "us"
    assert "?region=us" in re.search(r'rel="canonical" href="([^"]+)"', html(response)).group(1)  # type: ignore[union-attr]


def test_region_switch_refuses_foreign_next(client: Client, hc_kb: KnowledgeBase) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/help/tenant-b/help/en/"):
        response = client.get(f"{SITE}/region/", {"region": "eu", "next": target})
        assert response["Location"] == f"{SITE}/en/"


def test_home_lists_published_articles_only(client: Client, hc_kb: KnowledgeBase) -> None:
    page = html(client.get(f"{SITE}/en/"))
    assert "Returns policy" in page
    assert "secret" not in page.lower()
    assert page.count("<h1>") == 1


@pytest.mark.parametrize(
    "key", ["secret-draft", "secret-review", "secret-rejected", "nope", "BAD KEY", "x" * 101]
)
def test_unpublished_or_unknown_articles_are_404(client: Client, hc_kb: KnowledgeBase, key: str) -> None:
    response = client.get(f"{SITE}/en/articles/{key}/")
    assert response.status_code == 404
    assert "secret" not in html(response).lower()


def test_draft_of_a_published_text_is_never_shown(
    client: Client, hc_kb: KnowledgeBase, tenant_a: Tenant
) -> None:
    from apps.knowledge.services import translation_save

    with tenant_context(tenant_a):
        translation_save(kb=hc_kb, key="returns-policy", locale="en", title="DRAFT TITLE", body="draft body")
    page = html(client.get(f"{SITE}/en/articles/returns-policy/"))
    assert "DRAFT TITLE" not in page and "Returns policy" in page


@pytest.mark.parametrize("locale", ["xx", "DE", "de-XX", "en_US", "<b>"])
def test_unknown_locale_is_404(client: Client, hc_kb: KnowledgeBase, locale: str) -> None:
    assert client.get(f"{SITE}/{locale}/").status_code == 404
    assert client.get(f"{SITE}/{locale}/articles/returns-policy/").status_code == 404


def test_disabled_help_center_is_404_everywhere(
    client: Client, hc_kb: KnowledgeBase, tenant_a: Tenant
) -> None:
    assert client.get(f"{SITE}/en/").status_code == 200
    with tenant_context(tenant_a):
        kb_update(kb=hc_kb, helpcenter_enabled=False)
    for path in (
        "/",
        "/en/",
        "/en/articles/returns-policy/",
        "/en/search/?q=return",
        "/sitemap.xml",
        "/en/sitemap.xml",
        "/robots.txt",
    ):
        assert client.get(SITE + path).status_code == 404, path


def test_other_tenant_and_unknown_handle_are_404(
    client: Client, hc_kb: KnowledgeBase, hc_kb_b: KnowledgeBase
) -> None:
    assert client.get("/help/tenant-b/help/en/articles/returns-policy/").status_code == 200
    assert client.get(f"/help/tenant-a/{hc_kb_b.pk}/en/").status_code == 404  # B's id under A's slug
    assert client.get("/help/tenant-a/other/en/").status_code == 404
    assert client.get("/help/no-such-tenant/help/en/").status_code == 404


def test_archiving_takes_the_text_off_at_once(client: Client, hc_kb: KnowledgeBase, tenant_a: Tenant) -> None:
    assert client.get(f"{SITE}/en/articles/gift-cards/").status_code == 200  # now cached
    with tenant_context(tenant_a):
        text = Translation.objects.get(article__kb=hc_kb, article__key="gift-cards", locale="en")
        translation_archive(translation=text)
    assert client.get(f"{SITE}/en/articles/gift-cards/").status_code == 404


def test_post_is_refused(client: Client, hc_kb: KnowledgeBase) -> None:
    assert client.post(f"{SITE}/en/articles/returns-policy/").status_code == 405


def test_site_root_redirects_by_accept_language(client: Client, hc_kb: KnowledgeBase) -> None:
    assert client.get(f"{SITE}/", HTTP_ACCEPT_LANGUAGE="fr-CA,fr;q=0.9")["Location"] == f"{SITE}/fr/"
    assert client.get(f"{SITE}/", HTTP_ACCEPT_LANGUAGE="pt")["Location"] == f"{SITE}/en/"


def test_sitemaps_and_robots(client: Client, hc_kb: KnowledgeBase) -> None:
    index = html(client.get(f"{SITE}/sitemap.xml"))
    for locale in ("en", "de", "fr", "es", "ja"):
        assert f"<loc>http://testserver{SITE}/{locale}/sitemap.xml</loc>" in index
    de = client.get(f"{SITE}/de/sitemap.xml")
    assert de["Content-Type"].startswith("application/xml")
    body = html(de)
    assert f"{SITE}/de/articles/refund-timing/" in body
    assert "gift-cards" not in body and "secret" not in body  # not published in German / not published
    robots = html(client.get(f"{SITE}/robots.txt"))
    assert f"Sitemap: http://testserver{SITE}/sitemap.xml" in robots


def test_markup_in_a_body_is_never_live(client: Client, hc_kb: KnowledgeBase, tenant_a: Tenant) -> None:
    # A body stored before the write checks (or by a raw import) still renders inert.
    with tenant_context(tenant_a):
        text = Translation.objects.select_related("published_revision").get(
            article__kb=hc_kb, article__key="gift-cards", locale="en"
        )
        revision = text.published_revision
        assert revision is not None
        type(revision).objects.filter(pk=revision.pk).update(
            body="<script>alert(1)</script><img src=x onerror=alert(1)> [x](javascript:alert(1))"
        )
    page = html(client.get(f"{SITE}/en/articles/gift-cards/"))
    assert "<script" not in page and "<img" not in page and 'href="javascript' not in page
    assert "&lt;script&gt;" in page  # shown as text


def test_handle_must_be_unique_and_a_slug(hc_kb: KnowledgeBase, tenant_a: Tenant) -> None:
    from apps.core.errors import ValidationFailed
    from apps.knowledge.services import kb_create

    with tenant_context(tenant_a):
        other = kb_create(tenant=tenant_a, name="Other", source_locale="en")
        with pytest.raises(ValidationFailed):
            kb_update(kb=other, helpcenter_enabled=True, helpcenter_handle="help")
        with pytest.raises(ValidationFailed):
            kb_update(kb=other, helpcenter_handle="Not a slug!")
        kb_update(kb=other, helpcenter_enabled=True)
        other.refresh_from_db()
        assert other.helpcenter_handle == "other"


def test_settings_change_is_audited(hc_kb: KnowledgeBase, tenant_a: Tenant, alice: Any) -> None:
    from apps.audit.models import AuditEvent

    with tenant_context(tenant_a):
        kb_update(kb=hc_kb, helpcenter_enabled=False, actor=alice)
        event = AuditEvent.objects.filter(action="knowledge.kb_updated").order_by("-seq").first()
    assert event is not None and event.changes["helpcenter"] == {"enabled": False, "handle": "help"}
