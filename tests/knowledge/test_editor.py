"""The side-by-side editor: source and target, revision diffs, saving drafts, submitting, creating missing
translations and regional variants, bad input, and who may edit which locale and region."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Revision, Status, Translation
from apps.knowledge.services import translation_save, translation_submit
from apps.tenants.models import Membership, Tenant
from tests.fixtures.auth import login_verified
from tests.knowledge.helpers import DE, EN, editor_url

pytestmark = pytest.mark.django_db


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def section(html: str, cls: str) -> str:
    match = re.search(rf'<section class="card {cls}".*?</section>', html, re.S)
    assert match, cls
    return match.group(0)


def limit(user: Any, tenant: Tenant, *, locales: list[str], regions: list[str] | None = None) -> None:
    Membership.objects.filter(user=user, tenant=tenant).update(locales=locales, regions=regions or [])


def test_source_left_target_right(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any
) -> None:
    response = alice_client.get(editor_url(tenant_a, kb, "de"))
    assert response.status_code == 200
    html = response.content.decode()
    source = section(html, "source")
    assert "Source (en)" in text(response) and "You can return items within 30 days." in source
    target = section(html, "target")
    assert 'name="title"' in target and 'value="Rückgabe"' in target and 'lang="de"' in target
    assert "innerhalb von 45 Tagen" in target  # the working copy, not the published text
    assert "revision #1 is live" in text(response)
    # Tabs to the other texts of the article, the missing ones included.
    tabs = dict(re.findall(r'class="text-tab" data-locale="([^"]+)" data-region="">(.*?)</li>', html, re.S))
    assert set(tabs) == {"en", "de", "fr", "es", "ja"}
    assert "Missing" in tabs["fr"] and "Published" in tabs["en"]


def test_diff_between_published_and_working_copy(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any
) -> None:
    html = alice_client.get(editor_url(tenant_a, kb, "de")).content.decode()
    diff = section(html, "revision-diff")
    assert "Published revision #1" in diff and "Working copy" in diff
    assert "1 line added, 1 line removed" in diff
    row = re.search(r'<tr class="diff-replace">(.*?)</tr>', diff, re.S).group(1)  # type: ignore[union-attr]
    assert "<del>30</del>" in row and "<ins>45</ins>" in row
    assert diff.count('class="diff-replace"') == 1 and 'class="diff-insert"' not in diff
    # Both revisions are listed, the live one marked, with their author and note.
    rows = re.findall(r'<tr class="revision" data-number="(\d+)">(.*?)</tr>', diff, re.S)
    assert [n for n, _ in rows] == ["2", "1"]
    assert "alice" in rows[0][1] and "45 days now" in rows[0][1] and "live" in rows[1][1]


def test_diff_between_two_revisions_and_bad_revision_numbers(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any
) -> None:
    response = alice_client.get(editor_url(tenant_a, kb, "de"), {"from": 1, "to": 2})
    assert response.status_code == 200
    diff = section(response.content.decode(), "revision-diff")
    assert "Revision #1" in diff and "Revision #2" in diff and "<ins>45</ins>" in diff
    bad_requests: list[dict[str, str]] = [{"from": "1", "to": "9"}, {"from": "x", "to": "2"}, {"to": "2"}]
    for bad in bad_requests:
        response = alice_client.get(editor_url(tenant_a, kb, "de"), bad)
        assert response.status_code == 400, bad
        assert "Choose two revisions of this text to compare." in text(response)


def test_diff_escapes_article_text(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, alice: Any
) -> None:
    with tenant_context(tenant_a):
        translation_save(
            kb=kb,
            key="returns",
            locale="de",
            title="Rückgabe",
            # Raw HTML is refused on save (test_content.py); markup in a code span is text and stays text.
            body=DE + '\n\n`<script>alert("x")</script>` & `<b>bold</b>`',
            author=alice,
        )
    html = alice_client.get(editor_url(tenant_a, kb, "de")).content.decode()
    assert "<script>alert" not in html and "<b>bold</b>" not in html
    assert "`&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;` &amp; `&lt;b&gt;bold&lt;/b&gt;`" in html


def test_source_changes_are_shown_when_a_translation_needs_an_update(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, alice: Any
) -> None:
    with tenant_context(tenant_a):
        translation_save(
            kb=kb,
            key="returns",
            locale="en",
            title="Returns",
            body=EN.replace("5 days", "7 days"),
            author=alice,
        )
    response = alice_client.get(editor_url(tenant_a, kb, "de"))
    assert "The source text changed since this translation was last updated." in text(response)
    source_diff = section(response.content.decode(), "source-diff")
    assert "<del>5</del>" in source_diff and "<ins>7</ins>" in source_diff


def test_save_draft_then_submit_for_review(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, alice: Any
) -> None:
    path = editor_url(tenant_a, kb, "de")
    body = DE.replace("30 Tagen", "60 Tagen")
    response = alice_client.post(
        path, {"title": "Rückgabe", "body": body.replace("\n", "\r\n"), "tags": "a, b, a", "save": "1"}
    )
    assert response.status_code == 302 and response.url == path  # type: ignore[attr-defined]
    with tenant_context(tenant_a):
        de = Translation.objects.get(pk=texts["de"].pk)
        assert (de.status, de.body, de.tags) == (Status.DRAFT, body, ["a", "b"])  # CRLF normalised
        latest = Revision.objects.filter(translation=de).first()
        assert (latest.number, latest.author_id) == (3, alice.pk)  # type: ignore[union-attr]
        assert de.published_revision.number == 1  # type: ignore[union-attr]  # still live
    response = alice_client.post(
        path, {"title": "Rückgabe", "body": body, "tags": "a, b", "submit": "1"}, follow=True
    )
    assert "The text is saved and waiting for review." in text(response)
    with tenant_context(tenant_a):
        de.refresh_from_db()
        assert de.status == Status.IN_REVIEW
        assert Revision.objects.filter(translation=de).count() == 3  # nothing changed: no new revision


def test_create_a_missing_translation(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any
) -> None:
    path = editor_url(tenant_a, kb, "fr")
    response = alice_client.get(path)
    assert response.status_code == 200
    assert "Not translated yet: save to create this translation." in text(response)
    assert 'name="title" value=' not in response.content.decode()  # an empty form
    response = alice_client.post(path, {"title": "Retours", "body": "# Retours\n\n30 jours.", "save": "1"})
    assert response.status_code == 302
    with tenant_context(tenant_a):
        fr = Translation.objects.get(article__key="returns", locale="fr", region="")
        assert fr.status == Status.DRAFT and fr.source_revision_id is not None
    html = alice_client.get(path).content.decode()
    tab = re.search(r'class="text-tab" data-locale="fr" data-region="">(.*?)</li>', html, re.S).group(1)  # type: ignore[union-attr]
    assert "Draft" in tab and "Missing" not in tab


def test_create_a_regional_variant(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any
) -> None:
    response = alice_client.get(editor_url(tenant_a, kb, "de"))
    links = re.findall(r'class="new-variant" href="([^"]+)">(\w+)<', response.content.decode())
    assert [label for _, label in links] == ["EU", "US"]
    path = editor_url(tenant_a, kb, "de", region="EU")  # upper case in a URL still means the code "eu"
    response = alice_client.get(path)
    assert response.status_code == 200
    page = text(response)
    assert "New variant of returns for EU" in page and "Starts from the generic text of this locale" in page
    assert "innerhalb von 45 Tagen" in section(response.content.decode(), "target")  # prefilled from de
    response = alice_client.post(path, {"title": "Rückgabe (EU)", "body": "14 Tage Widerruf.", "save": "1"})
    assert response.status_code == 302
    with tenant_context(tenant_a):
        variant = Translation.objects.get(article__key="returns", locale="de", region="eu")
        assert variant.title == "Rückgabe (EU)" and variant.status == Status.DRAFT


def test_unknown_article_locale_or_region_is_404(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any
) -> None:
    assert alice_client.get(editor_url(tenant_a, kb, "de", key="nope")).status_code == 404
    assert alice_client.get(editor_url(tenant_a, kb, "it")).status_code == 404  # not a locale of this KB
    assert alice_client.get(editor_url(tenant_a, kb, "de", region="apac")).status_code == 404
    assert alice_client.post(editor_url(tenant_a, kb, "it"), {"title": "x", "save": "1"}).status_code == 404


def test_bad_input_is_a_field_error_not_a_500(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any
) -> None:
    path = editor_url(tenant_a, kb, "de")
    response = alice_client.post(path, {"title": "   ", "body": "x", "save": "1"})
    assert response.status_code == 400
    html = response.content.decode()
    assert re.search(r'id="id_title_error">This field is required.<', html)
    response = alice_client.post(path, {"title": "T" * 301, "body": "x", "tags": "y" * 51, "save": "1"})
    assert response.status_code == 400
    assert "Ensure this value has at most 300 characters" in text(response)
    assert "Use at most 50 characters per tag." in text(response)
    with tenant_context(tenant_a):
        assert Revision.objects.filter(translation=texts["de"]).count() == 2  # nothing saved


def test_rejection_reason_is_shown_to_the_editor(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, reviewer: Any
) -> None:
    from apps.knowledge.services import translation_reject

    with tenant_context(tenant_a):
        de = translation_submit(translation=texts["de"])
        translation_reject(translation=de, actor=reviewer, reason="Say <45> days in the title too.")
    response = alice_client.get(editor_url(tenant_a, kb, "de"))
    html = response.content.decode()
    assert "Sent back by the reviewer" in text(response) and "rita" in text(response)
    assert "Say &lt;45&gt; days in the title too." in html


def test_editor_limited_to_locales_and_regions(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, editor: Any
) -> None:
    limit(editor, tenant_a, locales=["de"], regions=["US"])
    login_verified(client, editor)
    lena = client
    editor_path = editor_url(tenant_a, kb, "de")
    assert lena.get(editor_path).status_code == 200
    tabs = re.findall(r'class="text-tab" data-locale="([^"]+)"', lena.get(editor_path).content.decode())
    assert set(tabs) == {"de"}
    assert lena.get(editor_url(tenant_a, kb, "fr")).status_code == 403
    assert lena.get(editor_url(tenant_a, kb, "en")).status_code == 403
    response = lena.post(editor_url(tenant_a, kb, "fr"), {"title": "Retours", "body": "x", "save": "1"})
    assert response.status_code == 403
    assert lena.get(editor_url(tenant_a, kb, "de", region="eu")).status_code == 403
    assert lena.get(editor_url(tenant_a, kb, "de", region="us")).status_code == 200
    response = lena.post(editor_url(tenant_a, kb, "de", region="us"), {"title": "Rückgabe US", "save": "1"})
    assert response.status_code == 302
    with tenant_context(tenant_a):
        assert not Translation.objects.filter(locale="fr").exists()
        assert Translation.objects.get(locale="de", region="us").title == "Rückgabe US"


def test_viewer_cannot_edit_and_charlie_gets_404(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, bob: Any, charlie: Any
) -> None:
    login_verified(client, bob)
    assert client.get(editor_url(tenant_a, kb, "de")).status_code == 403
    assert client.post(editor_url(tenant_a, kb, "de"), {"title": "x", "save": "1"}).status_code == 403
    login_verified(client, charlie)
    for path in (
        editor_url(tenant_a, kb, "de"),
        editor_url(tenant_a, kb, "fr"),
        editor_url(tenant_a, kb, "de", region="eu"),
    ):
        response = client.get(path)
        assert response.status_code == 404 and "Rückgabe".encode() not in response.content, path
    assert client.post(editor_url(tenant_a, kb, "de"), {"title": "x", "save": "1"}).status_code == 404
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=texts["de"].pk).title == "Rückgabe"
