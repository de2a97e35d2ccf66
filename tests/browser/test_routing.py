"""The routing console in a real browser under the Content-Security-Policy: an admin enters business hours in
the weekly grid, creates a route with them, reorders the rules and asks the preview which route a German
conversation on a Friday evening takes (closed, next opening Monday 09:00 local after the DST change)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.chat.models import BusinessHours, HandoffRoute
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified
from tests.fixtures.integrations import offline_connection

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def signed_in(page: Page, base: str, user: Any) -> None:
    """Carry a verified console session of `user` (password and second factor done) into the browser."""
    client = Client()
    login_verified(client, user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base}])


def test_admin_builds_routes_and_previews(
    live_server: LiveServer, page: Page, tenant_a: Tenant, alice: Any
) -> None:
    base = live_server.url
    snow_a = offline_connection(tenant_a, "servicenow", name="ServiceNow EU")
    HandoffRoute.objects.create(tenant=tenant_a, name="Catch-all", connection_id=snow_a.pk, position=0)
    signed_in(page, base, alice)
    page.goto(f"{base}/t/{tenant_a.slug}/handoff-routes/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Handoff routing")

    page.get_by_role("link", name="New business hours").click()
    page.get_by_label("Name").fill("Berlin office")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"):
        page.get_by_label(day).fill("09:00-12:30, 13:30-17:00")
    page.get_by_label("Saturday").fill("22:00-02:00")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".form-errors")).to_contain_text("crosses midnight")
    page.get_by_label("Saturday").fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("link", name="Berlin office")).to_be_visible()

    page.get_by_role("link", name="New route").click()
    page.get_by_label("Name").fill("DACH")
    page.get_by_label("Locales").fill("de")
    page.get_by_label("Ticket connection").select_option(label="ServiceNow EU (servicenow)")
    page.locator("#id_queue").fill("DACH L1")
    page.get_by_label("Business hours").select_option(label="Berlin office")
    page.get_by_role("button", name="Save").click()
    rows = page.locator("table").first.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("DACH")
    page.get_by_role("button", name="Move DACH up").click()
    expect(page.locator("table").first.locator("tbody tr").first).to_contain_text("DACH")

    page.get_by_label("Locale").fill("de-AT")
    page.get_by_label("Date and time").fill("2026-03-27T18:00")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Preview").click()
    result = page.locator("#preview-result")
    expect(result).to_contain_text("DACH")
    expect(result).to_contain_text("DACH L1")
    expect(result).to_contain_text("2026-03-30 09:00 (Europe/Berlin), 2026-03-30 07:00 UTC")
    assert BusinessHours.objects.filter(tenant=tenant_a).count() == 1
