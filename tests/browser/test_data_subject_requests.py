"""Data-subject requests in a real browser, answered by a real Celery worker (issue 22).

An admin sees an overdue request highlighted in the register, registers an access request (the worker
builds the archive, the admin downloads it), then an erasure (the worker tells HubSpot's simulator through
the outbox; the request completes once the vendor confirmed).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.core.context import tenant_context
from apps.integrations.models import SyncedRecord
from apps.policies.dsr import dsr_create
from apps.tenants.models import Tenant
from connectors.hubspot.simulator import HubSpotSimulator
from tests.fixtures.auth import login_verified
from tests.fixtures.integrations import demo_connection
from tests.fixtures.processes import Worker
from tests.fixtures.simulators import TINY, StartSimulator

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

EMAIL = "jane.subject@example.test"
SCREENSHOT = "/tmp/hub-dsr-request.png"  # noqa: S108 - a fixed path for a person to look at; never read back


def signed_in(page: Page, base: str, user: Any) -> None:
    """Carry a verified console session of `user` (password and second factor done) into the browser."""
    client = Client()
    login_verified(client, user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base}])


def reload_until(page: Page, selector: str, *, seconds: float = 90, what: str) -> None:
    """Reload the page until `selector` is there (the worker answers in the background)."""
    deadline = time.monotonic() + seconds
    while page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
        page.reload()


def register(page: Page, *, kind: str) -> None:
    page.get_by_role("link", name="Register a request").click()
    page.locator("select[name=kind]").select_option(kind)
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Notes").fill("By e-mail; identity checked against the customer account.")
    page.get_by_role("button", name="Register").click()
    expect(page.locator(".message.success")).to_contain_text("Request registered.")


def test_admin_answers_access_and_erasure_requests(
    live_server: LiveServer,
    page: Page,
    tenant_a: Tenant,
    alice: Any,
    simulator: StartSimulator,
    tmp_path: Path,
) -> None:
    base = live_server.url
    hs = simulator(HubSpotSimulator, counts=TINY)
    connection = demo_connection(tenant_a, "hubspot", hs.describe(), name="HubSpot")
    contact = next(iter(hs.by_type["contacts"].rows.values()))
    hs.by_type["contacts"].update(contact.id, {"email": EMAIL})
    now = timezone.now()
    with tenant_context(tenant_a):
        SyncedRecord.objects.create(
            connection=connection,
            stream="contacts",
            external_id=contact.id,
            updated_at=now,
            email=EMAIL,
            display_name="Jane Subject",
            fields={"email": EMAIL, "first_name": "Jane"},
            raw={},
            content_hash="0" * 64,
            synced_at=now,
        )
    late = dsr_create(
        tenant=tenant_a,
        kind="access",
        email="late@example.test",
        received_at=now - timedelta(days=40),
        actor=alice,
    )
    worker = Worker(tmp_path / "worker.log", hs.ca_bundle or "", queues="default,outbox", name="dsr")
    worker.start()
    try:
        signed_in(page, base, alice)
        page.goto(f"{base}/t/{tenant_a.slug}/policies/")
        page.get_by_role("link", name="Open the request register").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Data-subject requests")
        overdue = page.locator('tr[data-deadline="overdue"]')
        expect(overdue).to_have_count(1)
        expect(overdue).to_contain_text("Overdue")
        expect(overdue).to_contain_text(late.subject_key[:12])

        # Access: the worker builds the archive; the admin downloads it.
        register(page, kind="access")
        expect(page.get_by_role("heading", level=1)).to_have_text("Access (export)")
        page.get_by_role("button", name="Build the access archive").click()
        reload_until(page, "#dsr-download", what=f"the access archive; see {worker.log}")
        expect(page.locator("#dsr-status")).to_have_attribute("data-status", "completed")
        digest = page.locator("#archive-sha256").inner_text()
        with page.expect_download() as started:
            page.get_by_role("link", name="Download the archive").click()
        content = Path(started.value.path()).read_bytes()
        assert hashlib.sha256(content).hexdigest() == digest
        archive = zipfile.ZipFile(io.BytesIO(content))
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["counts"]["synced_records"] == 1
        records = json.loads(archive.read("synced_records.json"))["rows"]
        assert [(r["external_id"], r["email"]) for r in records] == [(contact.id, EMAIL)]
        page.reload()  # the download is in the timeline
        expect(page.locator("ol.timeline")).to_contain_text("dsr.archive_downloaded")

        # Erasure: the hub's copies go at once; HubSpot is told through the outbox by the worker.
        page.get_by_role("link", name="Data-subject requests").first.click()
        register(page, kind="erasure")
        page.get_by_label("I understand that this permanently deletes").check()
        page.get_by_role("button", name="Erase and tell the vendors").click()
        reload_until(
            page, '#dsr-status[data-status="completed"]', what=f"HubSpot's confirmation; see {worker.log}"
        )
        expect(page.locator("#dsr-notifications tbody tr")).to_have_count(1)
        expect(page.locator('#dsr-notifications tr[data-state="delivered"]')).to_contain_text("HubSpot")
        expect(page.locator("ol.timeline")).to_contain_text("dsr.completed")
        page.screenshot(path=SCREENSHOT, full_page=True)
        assert hs.gdpr_deletes == [{"objectId": contact.id, "idProperty": None}]
        assert contact.id not in hs.by_type["contacts"].rows
        with tenant_context(tenant_a):
            assert not SyncedRecord.objects.filter(email=EMAIL).exists()
        assert re.search(r"/policies/requests/[0-9a-f-]{36}/$", page.url)
    finally:
        worker.stop()
