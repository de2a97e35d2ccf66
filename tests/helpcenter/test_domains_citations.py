"""Custom domains by Host header, chat citations that link to the help center, the console settings form."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.helpcenter.models import HelpCenterDomain
from apps.helpcenter.services import domain_add, domain_remove
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_update
from apps.tenants.models import Tenant
from tests.chat.helpers import say, start
from tests.fixtures.chat import IssuedKey
from tests.helpcenter.helpers import HOST, HOSTS, SITE, html

pytestmark = pytest.mark.django_db


@override_settings(ALLOWED_HOSTS=HOSTS)
def test_custom_domain_serves_the_help_center_at_root(client: Client, domain_a: HelpCenterDomain) -> None:
    response = client.get("/de/articles/returns-policy/", HTTP_HOST=HOST)
    assert response.status_code == 200
    page = html(response)
    assert f'<link rel="canonical" href="https://{HOST}/de/articles/returns-policy/">' in page
    assert 'href="/de/search/"' in page or 'action="/de/search/"' in page
    assert client.get("/", HTTP_HOST=HOST)["Location"] == "/en/"
    assert f"Sitemap: https://{HOST}/sitemap.xml" in html(client.get("/robots.txt", HTTP_HOST=HOST))
    # The same page on the hub's host names the domain as canonical (no duplicate for search engines).
    hub_page = html(client.get(f"{SITE}/de/articles/returns-policy/"))
    assert f'<link rel="canonical" href="https://{HOST}/de/articles/returns-policy/">' in hub_page
    assert f'hreflang="en" href="https://{HOST}/en/articles/returns-policy/"' in hub_page


@override_settings(ALLOWED_HOSTS=HOSTS)
def test_custom_domain_serves_nothing_else(
    client: Client, domain_a: HelpCenterDomain, hc_kb_b: KnowledgeBase
) -> None:
    for path in (
        "/admin/",
        "/api/v1/conversations",
        "/t/tenant-a/",
        "/help/tenant-b/help/en/",
        "/accounts/login/",
    ):
        assert client.get(path, HTTP_HOST=HOST).status_code == 404, path
    # An unknown host gets the hub's own URLs (no help center at "/"), never another tenant's site.
    assert client.get("/en/", HTTP_HOST="unknown.example").status_code == 404


@override_settings(ALLOWED_HOSTS=HOSTS)
def test_removed_domain_stops_serving_and_is_audited(
    client: Client, domain_a: HelpCenterDomain, tenant_a: Tenant, alice: Any
) -> None:
    assert client.get("/en/", HTTP_HOST=HOST).status_code == 200
    domain_remove(domain=domain_a, actor=alice)
    assert client.get("/en/", HTTP_HOST=HOST).status_code == 404
    with tenant_context(tenant_a):
        actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"helpcenter.domain_added", "helpcenter.domain_removed"} <= actions


def test_domain_add_refuses_bad_hosts_duplicates_and_other_tenants_kbs(
    domain_a: HelpCenterDomain, tenant_a: Tenant, tenant_b: Tenant, hc_kb: KnowledgeBase
) -> None:
    for host in ("https://x.example", "x.example:8443", "bad host", "localhost", HOST):
        with pytest.raises(ValidationFailed):
            domain_add(host=host, tenant=tenant_a, kb_id=hc_kb.pk)
    with pytest.raises(ValidationFailed):
        domain_add(host="help.tenant-b.example", tenant=tenant_b, kb_id=hc_kb.pk)  # A's base, B's tenant


def test_chat_citation_links_to_the_public_article(
    api_client: Client, api_key_a: IssuedKey, hc_kb: KnowledgeBase, tenant_a: Tenant, client: Client
) -> None:
    conversation = start(api_client, api_key_a, locale="de")
    reply = say(
        api_client, api_key_a, conversation["id"], "Wie lange habe ich Zeit, einen Artikel zurückzugeben?"
    )
    citation = reply.json()["reply"]["citations"][0]
    assert citation["url"] == "http://localhost:8000/help/tenant-a/help/de/articles/returns-policy/?region=eu"
    path = citation["url"].removeprefix("http://localhost:8000")
    page = html(client.get(path))
    assert 'data-region="eu"' in page and "14" in page  # the text the answer cited
    with tenant_context(tenant_a):
        kb_update(kb=hc_kb, helpcenter_enabled=False)
    again = say(
        api_client, api_key_a, conversation["id"], "Wie lange habe ich Zeit, einen Artikel zurückzugeben?"
    )
    assert again.json()["reply"]["citations"][0]["url"].startswith("/t/tenant-a/knowledge/")


def test_chat_citation_uses_the_custom_domain(
    api_client: Client, api_key_a: IssuedKey, domain_a: HelpCenterDomain
) -> None:
    conversation = start(api_client, api_key_a, locale="en")
    reply = say(api_client, api_key_a, conversation["id"], "Which payment methods do you accept?")
    url = reply.json()["reply"]["citations"][0]["url"]
    assert url.startswith(f"https://{HOST}/en/articles/")


def test_console_settings_form(
    alice_client: Client, bob: Any, tenant_a: Tenant, hc_kb: KnowledgeBase
) -> None:
    url = f"/t/tenant-a/knowledge/{hc_kb.pk}/helpcenter/"
    viewer = Client()
    viewer.force_login(bob)
    assert viewer.post(url, {"enabled": "on", "handle": "x"}).status_code == 403
    client = alice_client
    detail = html(client.get(f"/t/tenant-a/knowledge/{hc_kb.pk}/"))
    assert "http://localhost:8000/help/tenant-a/help/en/" in detail and url in detail
    response = client.post(url, {"handle": "support"})  # unchecked: off
    assert response.status_code == 302
    with tenant_context(tenant_a):
        hc_kb.refresh_from_db()
    assert (hc_kb.helpcenter_enabled, hc_kb.helpcenter_handle) == (False, "support")
    assert Client().get(f"{SITE}/en/").status_code == 404
    client.post(url, {"enabled": "on", "handle": "Not valid!"})
    with tenant_context(tenant_a):
        hc_kb.refresh_from_db()
    assert (hc_kb.helpcenter_enabled, hc_kb.helpcenter_handle) == (False, "support")
    client.post(url, {"enabled": "on", "handle": "support"})
    assert Client().get("/help/tenant-a/support/en/").status_code == 200


def test_a_host_django_does_not_allow_is_400_not_served(client: Client, domain_a: HelpCenterDomain) -> None:
    # Without the host in ALLOWED_HOSTS Django refuses it before any routing (docs/helpcenter.md).
    assert client.get("/en/", HTTP_HOST=HOST).status_code == 400


@override_settings(ALLOWED_HOSTS=[*HOSTS, "hub.tenant-a.example"])
def test_a_redis_outage_does_not_break_the_hubs_other_hosts(
    client: Client, domain_a: HelpCenterDomain, settings: Any
) -> None:
    """A host that is not in HUB_HELPCENTER_HUB_HOSTS is looked up; with Redis down the control database
    answers the lookup, so the hub's pages on that host still work (no 503 for every request)."""
    from django.conf import settings as django_settings

    from apps.core import deadlines

    dead = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": dead}}
    try:
        response = client.get("/accounts/login/", HTTP_HOST="hub.tenant-a.example")
        assert response.status_code == 200, response.status_code
        # The custom domain is still recognised (from the database): the console is not served on it.
        assert client.get("/accounts/login/", HTTP_HOST=HOST).status_code in (404, 503)
    finally:
        deadlines.redis_health.succeeded()


@override_settings(ALLOWED_HOSTS=HOSTS)
def test_region_switch_on_the_custom_domain_refuses_foreign_next(
    client: Client, domain_a: HelpCenterDomain
) -> None:
    """At "/" every path starts with the site's (empty) prefix: a target browsers would read as another host
    (tabs and line breaks are dropped from URLs, "\\" is read as "/") must not pass as a local one."""
    for target in (
        "//evil.example/",
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\\evil.example/",
        "\t//evil.example",
    ):
        response = client.get("/region/", {"region": "eu", "next": target}, HTTP_HOST=HOST)
        assert response.status_code == 302
        assert response["Location"] == "/en/", (target, response["Location"])
    kept = client.get("/region/", {"region": "eu", "next": "/de/articles/returns-policy/"}, HTTP_HOST=HOST)
    assert kept["Location"] == "/de/articles/returns-policy/"
