"""Console "Exchange with translators": the section on the knowledge base page, download, upload with its
summary and per-unit errors, who may use it (viewer 403, a limited editor their locales, tenant B 404)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Status, Translation
from apps.knowledge.xliff import kb_xliff_export
from apps.tenants.models import Membership, Tenant
from tests.fixtures.auth import login_verified
from tests.knowledge.xliff_helpers import RETURNS_EN, publish_text, published_source, translate

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_tasks")]


@pytest.fixture
def source(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> Any:
    return published_source(tenant_a, kb, alice, reviewer)


def url(name: str, tenant: Tenant, kb: KnowledgeBase) -> str:
    return reverse(f"knowledge:{name}", kwargs={"tenant_slug": tenant.slug, "kb_id": kb.pk})


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def upload(client: Client, tenant: Tenant, kb: KnowledgeBase, data: bytes, name: str = "ja.xlf") -> Any:
    """Upload, then follow the redirect to the import's page (run_tasks ran the import already)."""
    return client.post(url("xliff", tenant, kb), {"file": SimpleUploadedFile(name, data)}, follow=True)


def test_kb_page_has_the_exchange_section(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, editor: Any
) -> None:
    login_verified(client, editor)
    html = client.get(reverse("knowledge:kb-detail", kwargs={"tenant_slug": tenant_a.slug, "kb_id": kb.pk}))
    page = html.content.decode()
    assert "Exchange with translators" in page
    assert (
        f'action="{url("xliff-export", tenant_a, kb)}"' in page
        and f'action="{url("xliff", tenant_a, kb)}"' in page
    )
    assert '<option value="ja">ja</option>' in page and '<option value="en">' not in page
    assert client.get(url("xliff", tenant_a, kb)).status_code == 200


def test_download_then_upload_shows_the_summary(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, editor: Any
) -> None:
    login_verified(client, editor)
    response = client.get(url("xliff-export", tenant_a, kb), {"locale": "ja"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-xliff+xml; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="help-center.ja.xlf"'
    with tenant_context(tenant_a):
        assert response.content == kb_xliff_export(kb=kb, locale="ja")
        event = AuditEvent.objects.filter(action="knowledge.xliff_exported", actor_id=editor.pk).get()
        assert event.changes == {"locale": "ja", "region": "", "units": 6}
    filled = translate(response.content, {"returns:title": "返品", "returns:body": "# 返品\n\n30日以内。"})
    result = upload(client, tenant_a, kb, filled)
    assert result.status_code == 200
    page = text(result)
    assert "Import into ja: saved and submitted for review: 1; unchanged: 1." in page
    assert reverse("knowledge:review-queue", kwargs={"tenant_slug": tenant_a.slug}) in result.content.decode()
    with tenant_context(tenant_a):
        ja = Translation.objects.get(article__key="returns", locale="ja")
        assert (ja.title, ja.status, ja.revisions.get().note) == (
            "返品",
            Status.IN_REVIEW,
            "XLIFF import: ja.xlf",
        )


def test_upload_lists_unit_errors_with_line_and_id(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, reviewer: Any
) -> None:
    login_verified(client, alice)
    exported = client.get(url("xliff-export", tenant_a, kb), {"locale": "fr"}).content
    filled = translate(exported, {"returns:title": "Retours", "returns:body": "Retours."})
    publish_text(
        tenant_a, kb, key="returns", locale="en", author=alice, reviewer=reviewer, title="Returns!",
        body=RETURNS_EN, phrasings=["how do I send something back", "refund for a sofa"],
    )  # fmt: skip
    response = upload(client, tenant_a, kb, filled, "fr.xlf")
    assert response.status_code == 200
    html = response.content.decode()
    row = re.search(r"<tr><td>(\d+)</td><td><code>returns:title</code></td><td>([^<]+)</td></tr>", html)
    assert row is not None and int(row[1]) > 1 and "changed since this file was exported" in row[2]
    assert "Units not imported (1)" in text(response)
    with tenant_context(tenant_a):
        assert not Translation.objects.filter(locale="fr").exists()


def test_bad_export_requests_are_form_errors(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    login_verified(client, alice)
    for params in ({}, {"locale": "en"}, {"locale": "xx"}, {"locale": "de", "region": "apac"}):
        response = client.get(url("xliff-export", tenant_a, kb), params)
        assert response.status_code == 400, params
        assert "Exchange with translators" in response.content.decode()


def test_limited_editor_exchanges_only_their_locales(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, editor: Any
) -> None:
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"], regions=["eu"])
    login_verified(client, editor)
    page = client.get(url("xliff", tenant_a, kb)).content.decode()
    assert '<option value="de">de</option>' in page and '<option value="ja">' not in page
    assert client.get(url("xliff-export", tenant_a, kb), {"locale": "ja"}).status_code == 400
    assert client.get(url("xliff-export", tenant_a, kb), {"locale": "de", "region": "us"}).status_code == 400
    assert client.get(url("xliff-export", tenant_a, kb), {"locale": "de", "region": "eu"}).status_code == 200
    with tenant_context(tenant_a):
        ja = translate(
            kb_xliff_export(kb=kb, locale="ja"), {"shipping:title": "配送", "shipping:body": "3日"}
        )
    response = upload(client, tenant_a, kb, ja)
    assert response.status_code == 400 and "You may not edit texts in ja." in response.content.decode()
    with tenant_context(tenant_a):
        assert not Translation.objects.filter(locale="ja").exists()


def test_viewer_gets_403_and_tenant_b_gets_404(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, bob: Any, charlie: Any
) -> None:
    with tenant_context(tenant_a):
        data = kb_xliff_export(kb=kb, locale="de")
    for user, status in ((bob, 403), (charlie, 404)):
        login_verified(client, user)
        for response in (
            client.get(url("xliff", tenant_a, kb)),
            client.get(url("xliff-export", tenant_a, kb), {"locale": "de"}),
            upload(client, tenant_a, kb, data),
        ):
            assert response.status_code == status
            assert b"Help center" not in response.content and b"<xliff" not in response.content
    with tenant_context(tenant_a):
        assert not AuditEvent.objects.filter(action="knowledge.xliff_imported").exists()
