"""The access review in a real browser (issue 22): a compliance officer signs in with a second factor, finds
the admin without 2FA, downloads the signed CSV and records the review with a note."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.audit import signing
from apps.audit.chain import manifest_bytes
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.browser.helpers import sign_in
from tests.fixtures.auth import PASSWORD, enroll, totp_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_officer_reviews_access_downloads_signed_csv_and_signs_off(
    live_server: LiveServer, page: Page, tenant_a: Tenant, alice: Any, officer: Any
) -> None:
    base = live_server.url
    device = enroll(officer)
    sign_in(page, base, "olivia", PASSWORD)
    page.get_by_label("Code").fill(totp_for(device).now())
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(f"{base}/t/tenant-a/")

    # From the audit log to the report.
    page.goto(f"{base}/t/tenant-a/audit/")
    page.get_by_role("link", name="Access review: who can do what").click()
    expect(page.get_by_role("heading", name="Access review", exact=True)).to_be_visible()
    expect(page.locator("#last-review")).to_have_text("This tenant's access has not been reviewed yet.")
    alice_row = page.locator('#access-members tr[data-username="alice"]')
    expect(alice_row).to_contain_text("Admin")
    expect(alice_row.locator(".badge", has_text="No 2FA")).to_be_visible()
    expect(page.locator('#access-members tr[data-username="olivia"] .badge')).to_have_count(0)

    # The signed CSV.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download", exact=True).click()
    archive = Path(info.value.path())
    assert info.value.suggested_filename.startswith("access-review-tenant-a-")
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        content = zf.read(manifest["file"])
    assert signing.verify(manifest_bytes(manifest), manifest["signature"], signing.public_key_b64())
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert next(r for r in rows if r["username"] == "alice")["flags"] == "missing_2fa"
    digest = manifest["report_digest"]
    expect(page.locator("#report-digest")).to_have_text(digest)

    # The sign-off, with a note.
    page.get_by_label("Note (optional)").fill("Asked alice to set up 2FA.")
    page.get_by_label("I have reviewed every row of this report.").check()
    page.get_by_role("button", name="Review completed").click()
    expect(page.locator("#last-review")).to_contain_text("Last reviewed by olivia on")
    expect(page.locator("#access-reviews")).to_contain_text("Asked alice to set up 2FA.")
    expect(page.locator("#access-reviews")).to_contain_text(digest)
    with tenant_context(tenant_a):
        event = AuditEvent.objects.get(action="access_review.completed")
    assert event.changes["digest"] == digest and event.actor_label == "olivia"
