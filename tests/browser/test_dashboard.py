"""The tenant dashboard in a real browser, with conversations held through the chat API on the demo knowledge.

A viewer signs in, opens Dashboards from the navigation and sees the figures, the SVG charts (with their
accessible names) and the data tables behind them; in German the same numbers use German separators.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.chat.models import Action
from apps.chat.services.channels import channel_create
from apps.knowledge.demo import seed_demo_knowledge
from apps.tenants.models import Tenant
from tests.browser.helpers import sign_in
from tests.fixtures.auth import PASSWORD
from tests.fixtures.chat import issue_key

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT = "/tmp/hub-dashboard.png"  # noqa: S108 - a fixed path for a person to look at; never read back
JSON = "application/json"


def converse(tenant: Tenant) -> None:
    """Two conversations through the chat API: three answered turns, one fallback (unknown order)."""
    channel = channel_create(tenant=tenant, name="Website", kind="web", allowed_actions=Action.values)
    key = issue_key(channel)
    client = Client()
    for locale, texts in (
        ("en", ["How long do I have to return an item?", "Hello!", "Where is my order 999999?"]),
        ("de", ["Wie lange habe ich Zeit, einen Artikel zurückzugeben?"]),
    ):
        started = client.post("/api/v1/conversations", {"locale": locale}, content_type=JSON, **key.headers)
        assert started.status_code == 201, started.content
        for text in texts:
            reply = client.post(
                f"/api/v1/conversations/{started.json()['id']}/messages",
                {"text": text},
                content_type=JSON,
                **key.headers,
            )
            assert reply.status_code == 200, reply.content


def test_viewer_sees_dashboard_with_charts_from_demo_conversations(
    live_server: LiveServer, page: Page, tenant_a: Tenant, bob: Any
) -> None:
    seed_demo_knowledge([tenant_a])
    converse(tenant_a)
    base = live_server.url

    sign_in(page, base, "bob", PASSWORD)
    expect(page).to_have_url(f"{base}/t/tenant-a/")
    page.locator("nav.sidebar").get_by_role("link", name="Dashboards").click()
    expect(page).to_have_url(f"{base}/t/tenant-a/dashboard/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboards")

    kpi = page.locator(".kpi")
    expect(kpi.filter(has_text="Conversations").locator("dd")).to_have_text("2")
    expect(kpi.filter(has_text="Turns").locator("dd")).to_have_text("4")
    expect(kpi.filter(has_text="Fallback rate").locator("dd")).to_have_text("25.0 %")
    expect(kpi.filter(has_text="Latency p95").locator("dd")).to_have_text(re.compile(r"^[\d,]+\.\d ms$"))

    # Charts are pictures with names; their bars are drawn, and the data table says the same in words.
    outcomes = page.get_by_role("img", name=re.compile(r"^Turns by outcome \(per hour\)"))
    expect(outcomes).to_be_visible()
    expect(outcomes.locator("rect.chart-s-fallback")).to_have_count(1)
    expect(page.get_by_role("img", name=re.compile(r"^Conversations started"))).to_be_visible()
    expect(page.locator("#chart-latency circle.chart-s-p95")).to_have_count(1)
    expect(page.locator("#chart-latency circle.chart-s-p95")).to_be_visible()
    figure = page.locator("#chart-conversations")
    figure.get_by_text("Data table").click()
    expect(figure.locator("tbody tr")).to_have_count(24)
    expect(figure.locator("tbody td").filter(has_text=re.compile(r"^2$"))).to_have_count(1)

    # Translation coverage of the demo knowledge base, and empty states where the demo has nothing.
    expect(page.get_by_role("img", name="Translation coverage")).to_be_visible()
    expect(page.locator("table.coverage tr[data-locale='de']")).to_be_visible()
    expect(page.get_by_text("No connections yet")).to_be_visible()

    # Another window: the last hour has the same turns, in per-minute buckets.
    page.get_by_label("Period", exact=True).select_option("1h")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"\?window=1h$"))
    expect(page.get_by_role("img", name=re.compile(r"^Turns by outcome \(per minute\)"))).to_be_visible()
    expect(kpi.filter(has_text="Fallback rate").locator("dd")).to_have_text("25.0 %")
    page.screenshot(path=SCREENSHOT, full_page=True)

    # German: the same figure with a decimal comma.
    bob.language = "de"
    bob.save(update_fields=["language"])
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.locator(".kpi[data-kpi='fallback'] dd")).to_have_text("25,0 %")
