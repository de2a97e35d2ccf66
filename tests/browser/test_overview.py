"""The tenant overview and the confirmation step in a real browser, under the strict CSP (no JavaScript).

A connector manager signs in, lands on the overview, follows "Review dead letters", opens the letter, asks to
discard it, reads the confirmation page and confirms: the letter is discarded and the overview is all clear.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.core.context import tenant_context
from apps.integrations.models import Connection, DeadLetter, DeadLetterKind, DeadLetterStatus
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from tests.browser.helpers import sign_in
from tests.console.helpers import servicenow
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "correct-horse-battery-9"  # UserFactory's


def setup_connection(tenant: Tenant) -> Connection:
    """A connector manager, connor, and one ServiceNow connection that is never called."""
    membership_add(tenant=tenant, user=UserFactory.create(username="connor"), role=Role.CONNECTOR_MANAGER)
    return servicenow(tenant, name="Tickets")


def sign_in_connor(page: Page, base: str) -> None:
    sign_in(page, base, "connor", PASSWORD)


def test_connector_manager_discards_a_dead_letter_from_the_overview_after_confirming(
    live_server: LiveServer, page: Page, tenant_a: Tenant
) -> None:
    connection = setup_connection(tenant_a)
    with tenant_context(tenant_a):
        letter = DeadLetter.objects.create(kind=DeadLetterKind.SYNC, connection=connection, stream="tickets")
    base = live_server.url

    sign_in_connor(page, base)
    expect(page).to_have_url(f"{base}/t/tenant-a/")
    attention = page.locator("#attention")
    expect(attention).to_contain_text("1 dead letter is waiting for a replay or a discard.")
    expect(page.locator("#connections tr[data-connection]")).to_have_count(1)

    attention.get_by_role("link", name="Review dead letters").click()
    expect(page).to_have_url(f"{base}/t/tenant-a/dead-letters/?status=open")
    page.goto(f"{base}/t/tenant-a/dead-letters/{letter.pk}/")
    page.get_by_role("link", name="Discard").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Discard dead letter")
    expect(page.locator(".confirm-consequence")).to_contain_text("never retried")
    with tenant_context(tenant_a):
        assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.OPEN  # asking changed nothing
    page.get_by_role("button", name="Discard").click()
    expect(page.get_by_role("status")).to_contain_text("Discarded")
    with tenant_context(tenant_a):
        assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.DISCARDED

    page.goto(f"{base}/t/tenant-a/")
    expect(page.locator("#attention")).to_contain_text("Nothing needs your attention right now.")


def test_cancel_leads_back_and_changes_nothing(live_server: LiveServer, page: Page, tenant_a: Tenant) -> None:
    connection = setup_connection(tenant_a)
    base = live_server.url
    sign_in_connor(page, base)
    page.goto(f"{base}/t/tenant-a/connections/{connection.pk}/")
    page.get_by_role("link", name="Disable", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Disable connection")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(f"{base}/t/tenant-a/connections/{connection.pk}/")
    with tenant_context(tenant_a):
        connection.refresh_from_db()
    assert connection.enabled
