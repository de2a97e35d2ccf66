"""The public help center in Chromium: a chat reply's citation opens the article (no login), the visitor
switches language, then searches; keyboard first (skip link), no CSP violation on any page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.core.context import tenant_context
from apps.knowledge.demo import seed_demo_knowledge
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_update
from apps.tenants.models import Tenant
from tests.chat.helpers import say, start
from tests.fixtures.chat import IssuedKey

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_citation_opens_the_public_article_then_language_and_search(
    live_server: LiveServer, page: Page, tenant_a: Tenant, api_key_a: IssuedKey, settings: Any
) -> None:
    settings.HUB_HELPCENTER_PUBLIC_URL = live_server.url
    seed_demo_knowledge([tenant_a])
    with tenant_context(tenant_a):
        kb_update(
            kb=KnowledgeBase.objects.get(name="Help center"),
            helpcenter_enabled=True,
            helpcenter_handle="help",
        )

    api = Client()
    conversation = start(api, api_key_a, locale="de")
    reply = say(api, api_key_a, conversation["id"], "Wie lange habe ich Zeit, einen Artikel zurückzugeben?")
    url = reply.json()["reply"]["citations"][0]["url"]
    assert url == f"{live_server.url}/help/tenant-a/help/de/articles/returns-policy/?region=eu"

    page.goto(url)  # a fresh browser: no session, no login
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.locator("article")).to_have_attribute("data-region", "eu")
    expect(page.locator("article")).to_contain_text("14")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Zum Inhalt springen")).to_be_focused()

    page.get_by_role("link", name="English").click()
    expect(page).to_have_url(f"{live_server.url}/help/tenant-a/help/en/articles/returns-policy/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("article")).to_have_attribute("data-region", "eu")  # the region choice is remembered

    page.get_by_role("searchbox", name="Search the help center").fill("When will my parcel arrive?")
    page.keyboard.press("Enter")
    results = page.locator(".hc-results")
    expect(results.get_by_role("link").first).to_be_visible()
    results.get_by_role("link").first.click()
    expect(page.locator("article")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
