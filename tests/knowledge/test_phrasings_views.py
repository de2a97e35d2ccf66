"""Phrasings in the console: edited in the side-by-side editor (one per line, field errors naming the line),
shown to translators beside the source, compared and reviewed like the text, listed on the article page
(published ones only), and who may edit them."""

from __future__ import annotations

import html as htmllib
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Revision, Status, Translation
from apps.knowledge.services import translation_publish, translation_save, translation_submit
from apps.tenants.models import Membership, Tenant
from tests.fixtures.auth import login_verified
from tests.knowledge.helpers import DE, EN, editor_url

pytestmark = pytest.mark.django_db


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def section(html: str, cls: str) -> str:
    match = re.search(rf'<section class="card {cls}".*?</section>', html, re.S)
    assert match, cls
    return match.group(0)


def items(html: str, cls: str) -> list[str]:
    """The texts of the <li> elements of the first list with class `cls`."""
    match = re.search(rf'<ul class="[^"]*\b{cls}\b[^"]*"[^>]*>(.*?)</ul>', html, re.S)
    return (
        [
            htmllib.unescape(text(li)).strip()
            for li in re.findall(r"<li[^>]*>(.*?)</li>", match.group(1), re.S)
        ]
        if match
        else []
    )


def article_url(tenant: Tenant, kb: KnowledgeBase, key: str = "returns") -> str:
    return reverse("knowledge:article", kwargs={"tenant_slug": tenant.slug, "kb_id": kb.pk, "key": key})


def revisions(t: Translation) -> list[Revision]:
    return list(Revision.objects.filter(translation=t).order_by("number"))


def test_the_editor_saves_phrasings_one_per_line_as_a_new_revision(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, alice: Any
) -> None:
    path = editor_url(tenant_a, kb, "de")
    html = alice_client.get(path).content.decode()
    target = section(html, "target")
    # Labelled, with its help text tied to the field, in the text's language.
    assert '<label for="id_phrasings">Other ways customers ask this' in target
    area = re.search(r"<textarea[^>]*name=\"phrasings\"[^>]*>", target).group(0)  # type: ignore[union-attr]
    assert 'aria-describedby="id_phrasings_helptext"' in area and 'lang="de"' in area
    helptext = re.search(r'id="id_phrasings_helptext">(.*?)</p>', target, re.S).group(1)  # type: ignore[union-attr]
    assert "never shown to customers" in helptext and "At most 40, up to 200 characters each." in helptext

    body = DE.replace("30 Tagen", "45 Tagen")  # the working copy's body, unchanged
    response = alice_client.post(
        path,
        {
            "title": "Rückgabe",
            "body": body,
            "phrasings": "  Kann ich Schuhe zurückschicken?\r\n\r\n"
            "wie lange hab ich zeit  zum umtauschen\r\n",  # CRLF, blank lines, runs of spaces
            "save": "1",
        },
    )
    assert response.status_code == 302
    with tenant_context(tenant_a):
        de = Translation.objects.get(pk=texts["de"].pk)
        expected = ["Kann ich Schuhe zurückschicken?", "wie lange hab ich zeit zum umtauschen"]
        assert (de.phrasings, de.status) == (expected, Status.DRAFT)
        latest = revisions(de)[-1]
        assert (latest.number, latest.phrasings, latest.author_id) == (3, expected, alice.pk)
        assert de.published_revision.phrasings == []  # type: ignore[union-attr]  # live until reviewed
    # The editor shows them again, one per line.
    area = re.search(
        r'<textarea[^>]*name="phrasings"[^>]*>(.*?)</textarea>', alice_client.get(path).content.decode(), re.S
    )
    assert area and area.group(1).strip().splitlines() == expected

    # A form that does not send the field keeps them: no change, no revision.
    response = alice_client.post(path, {"title": "Rückgabe", "body": body, "save": "1"})
    assert response.status_code == 302
    # An empty field removes them: a change like any other.
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=de.pk).phrasings == expected and len(revisions(de)) == 3
    alice_client.post(path, {"title": "Rückgabe", "body": body, "phrasings": "", "save": "1"})
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=de.pk).phrasings == [] and len(revisions(de)) == 4


@pytest.mark.parametrize(
    ("phrasings", "error"),
    [
        ("ok question\n" + "x" * 201, "Line 2 is too long (201 characters): use at most 200."),
        ("ok\n\nwhat about <b>this</b>?", "Line 3: write plain text, no markup."),
        ("\n".join(f"question {n}" for n in range(41)), "Use at most 40 phrasings per text."),
    ],
)
def test_a_bad_phrasing_is_a_field_error_and_nothing_is_saved(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, phrasings: str, error: str
) -> None:
    path = editor_url(tenant_a, kb, "de")
    response = alice_client.post(
        path, {"title": "Rückgabe", "body": "x", "phrasings": phrasings, "save": "1"}
    )
    assert response.status_code == 400  # the form again, as for every other field error (never a 500)
    html = response.content.decode()
    errors = re.findall(r'<p class="error" id="id_phrasings_error">(.*?)</p>', html)
    assert error in errors, errors
    area = re.search(r"<textarea[^>]*name=\"phrasings\"[^>]*>", html).group(0)  # type: ignore[union-attr]
    assert 'aria-invalid="true"' in area
    with tenant_context(tenant_a):
        de = Translation.objects.get(pk=texts["de"].pk)
        assert de.phrasings == [] and len(revisions(de)) == 2 and de.body != "x"


def test_translators_see_the_source_phrasings_and_their_changes(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, alice: Any
) -> None:
    path = editor_url(tenant_a, kb, "de")
    source = section(alice_client.get(path).content.decode(), "source")
    assert "The source text has no phrasings." in text(source)
    with tenant_context(tenant_a):
        translation_save(
            kb=kb,
            key="returns",
            locale="en",
            title="Returns",
            body=EN,
            phrasings=["can I send shoes back?", "refund in < 3 days?"],  # "<" alone is text, not markup
            author=alice,
        )
    html = alice_client.get(path).content.decode()
    source = section(html, "source")
    assert items(source, "phrasings") == ["can I send shoes back?", "refund in < 3 days?"]
    assert '<ul class="phrasings" lang="en">' in source and "refund in &lt; 3 days?" in source
    assert "not word for word" in text(source)
    # A phrasings-only change of the source is a change the translation has to follow.
    assert "The source text changed since this translation was last updated." in text(html)
    changes = section(html, "source-diff")
    assert "The text is unchanged." in text(changes) and "2 phrasings added, 0 phrasings removed" in text(
        changes
    )
    assert items(changes, "phrasings-changes") == [
        "Added: can I send shoes back?",
        "Added: refund in < 3 days?",
    ]


def test_a_phrasings_only_change_is_reviewed_rejected_and_approved_like_text(
    alice_client: Client,
    client: Client,
    tenant_a: Tenant,
    kb: KnowledgeBase,
    texts: Any,
    alice: Any,
    reviewer: Any,
) -> None:
    with tenant_context(tenant_a):
        en = translation_save(
            kb=kb,
            key="returns",
            locale="en",
            title="Returns",
            body=EN,
            phrasings=["old one", "kept"],
            author=alice,
        )
        translation_submit(translation=en)
        translation_publish(translation=en, actor=reviewer)  # revision 2 is live
    path = editor_url(tenant_a, kb, "en")
    response = alice_client.post(
        path, {"title": "Returns", "body": EN, "phrasings": "kept\nnew one", "submit": "1"}, follow=True
    )
    assert "The text is saved and waiting for review." in text(response.content.decode())
    with tenant_context(tenant_a):
        en.refresh_from_db()
        assert en.status == Status.IN_REVIEW and en.phrasings == ["kept", "new one"]

    login_verified(client, reviewer)
    queue = client.get(reverse("knowledge:review-queue", kwargs={"tenant_slug": tenant_a.slug}))
    row = re.search(rf'<tr class="review" data-pk="{en.pk}">(.*?)</tr>', queue.content.decode(), re.S)
    cell = re.search(r'<td class="phrasings-change">(.*?)</td>', row.group(1), re.S)  # type: ignore[union-attr]
    assert cell and text(cell.group(1)).split() == ["Added:", "+1", "Removed:", "\u22121"]  # a minus sign
    changes = section(client.get(path).content.decode(), "revision-diff")
    assert "Published revision #2" in changes and "The text is unchanged." in text(changes)
    assert "1 phrasing added, 1 phrasing removed, 1 unchanged" in text(changes)
    assert items(changes, "phrasings-changes") == ["Added: new one", "Removed: old one"]
    assert "<ins>new one</ins>" in changes and "<del>old one</del>" in changes
    # The same between two revisions.
    changes = section(client.get(path, {"from": 2, "to": 3}).content.decode(), "revision-diff")
    assert "Revision #2" in changes and items(changes, "phrasings-changes") == [
        "Added: new one",
        "Removed: old one",
    ]

    reject = reverse("knowledge:review-reject", kwargs={"tenant_slug": tenant_a.slug, "pk": en.pk})
    client.post(reject, {"reason": "Keep “old one”, customers say it."})
    with tenant_context(tenant_a):
        en.refresh_from_db()
        assert en.status == Status.DRAFT and en.published_revision.phrasings == ["old one", "kept"]  # type: ignore[union-attr]
        translation_submit(translation=en, actor=alice)
    approve = reverse("knowledge:review-approve", kwargs={"tenant_slug": tenant_a.slug, "pk": en.pk})
    client.post(approve)
    with tenant_context(tenant_a):
        en.refresh_from_db()
        assert en.status == Status.PUBLISHED
        assert (en.published_revision.number, en.published_revision.phrasings) == (3, ["kept", "new one"])  # type: ignore[union-attr]


def test_the_article_page_lists_published_phrasings_only(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, alice: Any, reviewer: Any
) -> None:
    page = alice_client.get(article_url(tenant_a, kb)).content.decode()
    overview = section(page, "phrasings-overview")
    rows = dict(
        re.findall(
            r'<tr class="text-phrasings" data-locale="(\w+)" data-region="">(.*?)</tr>', overview, re.S
        )
    )
    assert set(rows) == {"en", "de"}
    assert all(
        "No phrasings yet — add the ways customers ask this to help the assistant find it." in text(r)
        for r in rows.values()
    )
    with tenant_context(tenant_a):
        en = translation_save(
            kb=kb,
            key="returns",
            locale="en",
            title="Returns",
            body=EN,
            phrasings=["a < b & c", "live"],
            author=alice,
        )
        translation_submit(translation=en)
        translation_publish(translation=en, actor=reviewer)
        translation_save(
            kb=kb,
            key="returns",
            locale="en",
            title="Returns",
            body=EN,
            phrasings=["live", "draft only"],
            author=alice,
        )
    page = alice_client.get(article_url(tenant_a, kb)).content.decode()
    overview = section(page, "phrasings-overview")
    row = re.search(
        r'<tr class="text-phrasings" data-locale="en" data-region="">(.*?)</tr>', overview, re.S
    ).group(1)  # type: ignore[union-attr]
    assert "2 phrasings" in text(row)
    assert items(row, "published-phrasings") == ["a < b & c", "live"] and "a &lt; b &amp; c" in row
    assert "draft only" not in overview
    # The working copy's phrasings are shown apart, as not published yet.
    selected = section(page, "selected")
    assert items(selected, "draft-phrasings") == ["live", "draft only"]
    assert "Phrasings in the working copy (not published yet)" in text(selected)


def test_another_tenant_gets_404_and_a_localization_editor_only_edits_their_locales(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, texts: Any, charlie: Any, editor: Any
) -> None:
    post = {"title": "Returns", "body": EN, "phrasings": "sneaky", "save": "1"}
    login_verified(client, charlie)
    for path in (editor_url(tenant_a, kb, "en"), editor_url(tenant_a, kb, "de")):
        assert client.get(path).status_code == 404
        assert client.post(path, post).status_code == 404
    assert client.get(article_url(tenant_a, kb)).status_code == 404

    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"], regions=[])
    login_verified(client, editor)
    assert client.get(editor_url(tenant_a, kb, "en")).status_code == 403
    assert client.post(editor_url(tenant_a, kb, "en"), post).status_code == 403
    # Their own locale: saved.
    response = client.post(
        editor_url(tenant_a, kb, "de"),
        {"title": "Rückgabe", "body": DE, "phrasings": "Schuhe zurück", "save": "1"},
    )
    assert response.status_code == 302
    with tenant_context(tenant_a):
        assert Translation.objects.get(locale="en", region="").phrasings == []
        assert Translation.objects.get(locale="de", region="").phrasings == ["Schuhe zurück"]
        assert not Translation.objects.filter(phrasings__contains=["sneaky"]).exists()
