"""Unanswered questions for localization teams (issue 21): counts per locale and region, and "Create article
from this" — a new article with a draft in the group's locale and region, the questions as phrasings, the
group handled, audited, the editor opened; key proposals and validation, a localization editor's locales,
other tenants (404) and personal data (redacted in the article too)."""

from __future__ import annotations

import html as htmllib
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.chat.models import Channel, Conversation, Message, Outcome, Role
from apps.core.context import tenant_context
from apps.knowledge.learning import article_key_proposals
from apps.knowledge.models import Article, KnowledgeBase, LearnedAction, LearnedQuestion, Status, Translation
from apps.knowledge.services import kb_create, translation_save
from apps.tenants.models import Membership, Tenant
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db

QUESTION = "do you deliver parcels to Antarctica?"


def page_text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def url(name: str, tenant: Tenant, kb: Any) -> str:
    return reverse(f"knowledge:{name}", kwargs={"tenant_slug": tenant.slug, "kb_id": getattr(kb, "pk", kb)})


def stored(tenant: Tenant, channel_id: Any, text: str, *, locale: str = "en", region: str = "") -> None:
    """A question whose reply fell back, stored as written (a tenant whose policy keeps transcripts)."""
    with tenant_context(tenant):
        conversation = Conversation.objects.create(
            channel_id=channel_id, channel_kind="web", locale=locale, region=region
        )
        question = Message.objects.create(conversation=conversation, role=Role.USER, text=text)
        Message.objects.create(
            conversation=conversation,
            role=Role.ASSISTANT,
            text="…",
            reply_to=question,
            intent="unknown",
            outcome=Outcome.FALLBACK,
        )


def create_form(response: Any, key: str | None = None) -> dict[str, Any]:
    """The fields of a group's "Create article from this" form (the first group unless `key`)."""
    page = response.content.decode()
    start = page.index(f'data-key="{key}"') if key else page.index('class="card learning-group"')
    start = page.index('class="create"', start)
    form = page[start : page.index("</form>", start)]
    fields: dict[str, Any] = {"phrasings": []}
    for name, value in re.findall(r'<input type="\w+" (?:id="[^"]*" )?name="(\w+)" value="([^"]*)"', form):
        value = htmllib.unescape(value)
        if name == "phrasings":
            fields["phrasings"].append(value)
        else:
            fields[name] = value
    return fields


def test_create_article_from_a_group(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel
) -> None:
    stored(tenant_a, channel_a.pk, "Do you deliver parcels to Antarctica")
    stored(tenant_a, channel_a.pk, QUESTION)  # the newest names the group
    response = alice_client.get(url("learning", tenant_a, kb))
    fields = create_form(response)
    assert fields["key"] == "do-you-deliver-parcels-to-antarctica"
    assert fields["title"] == QUESTION and fields["locale"] == "en"
    posted = alice_client.post(url("learning-create", tenant_a, kb), fields)
    assert posted.status_code == 302
    editor = reverse(
        "knowledge:editor",
        kwargs={
            "tenant_slug": tenant_a.slug,
            "kb_id": kb.pk,
            "key": "do-you-deliver-parcels-to-antarctica",
            "locale": "en",
        },
    )
    assert posted["Location"] == editor
    assert alice_client.get(editor).status_code == 200
    with tenant_context(tenant_a):
        text = Translation.objects.get(article__key="do-you-deliver-parcels-to-antarctica")
        assert (text.locale, text.region, text.status, text.title) == ("en", "", Status.DRAFT, QUESTION)
        assert text.published_revision is None and text.phrasings == fields["phrasings"]
        assert QUESTION in text.phrasings
        handled = LearnedQuestion.objects.filter(kb=kb, action=LearnedAction.CREATED)
        assert handled.count() == len(fields["questions"].split(","))
        event = AuditEvent.objects.get(action="knowledge.article_created_from_questions")
        assert event.changes["article"] == "do-you-deliver-parcels-to-antarctica"
        assert event.changes["title"] == QUESTION and event.changes["phrasings"] == 2
    assert "No unanswered questions" in page_text(alice_client.get(url("learning", tenant_a, kb)))


def test_a_regional_group_becomes_a_draft_of_its_region(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel
) -> None:
    stored(tenant_a, channel_a.pk, "Kann ich mit Klarna zahlen?", locale="de-AT", region="eu")
    fields = create_form(alice_client.get(url("learning", tenant_a, kb)))
    assert (fields["locale"], fields["region"]) == ("de", "eu")
    posted = alice_client.post(url("learning-create", tenant_a, kb), {**fields, "key": "klarna"})
    assert posted.status_code == 302 and posted["Location"].endswith("/edit/de/?region=eu")
    with tenant_context(tenant_a):
        text = Translation.objects.get(article__key="klarna")
        assert (text.locale, text.region, text.status) == ("de", "eu", Status.DRAFT)


def test_keys_are_proposed_free_and_validated(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel, alice: Any
) -> None:
    with tenant_context(tenant_a):
        translation_save(kb=kb, key="shipping", locale="en", title="Shipping", body="x", author=alice)
        translation_save(
            kb=kb, key="do-you-deliver-parcels-to-antarctica", locale="en", title="A", body="x", author=alice
        )
        assert article_key_proposals(
            kb=kb, texts=[QUESTION, "Do you ship?", "配送はできますか?", "shipping"]
        ) == [
            "do-you-deliver-parcels-to-antarctica-2",
            "do-you-ship",
            article_key_proposals(kb=kb, texts=["配送はできますか?"])[0],
            "shipping-2",
        ]
        assert article_key_proposals(kb=kb, texts=["配送はできますか?"])[0].startswith("question-")
    stored(tenant_a, channel_a.pk, QUESTION)
    response = alice_client.get(url("learning", tenant_a, kb))
    fields = create_form(response)
    assert fields["key"] == "do-you-deliver-parcels-to-antarctica-2"
    for key, error in (
        ("shipping", "An article with the key “shipping” exists already."),
        ("Bad Key!", "Use 1-100 lowercase letters, digits, dots, hyphens and underscores."),
        ("", "This field is required."),
    ):
        refused = alice_client.post(url("learning-create", tenant_a, kb), {**fields, "key": key})
        assert refused.status_code == 400, key
        assert error in htmllib.unescape(page_text(refused)), key
    refused = alice_client.post(url("learning-create", tenant_a, kb), {**fields, "title": "   "})
    assert refused.status_code == 400
    for phrasings in (["<b>bold</b> question"], ["x" * 999], ["[a](javascript:alert(1))"]):
        crafted = alice_client.post(url("learning-create", tenant_a, kb), {**fields, "phrasings": phrasings})
        assert crafted.status_code == 400, phrasings  # a form error, never a 500
    junk = {**fields, "questions": "not-a-hash," * 3, "group": "x" * 500, "back": "locale=<script>"}
    junk_post = alice_client.post(url("learning-create", tenant_a, kb), {**junk, "key": "shipping"})
    assert junk_post.status_code == 400
    refused = alice_client.post(url("learning-create", tenant_a, kb), {**fields, "locale": "xx"})
    assert refused.status_code == 302  # an unknown locale is the knowledge base's source locale (kb_locale)
    with tenant_context(tenant_a):
        assert Article.objects.filter(kb=kb).count() == 3
        assert Translation.objects.get(article__key="shipping").title == "Shipping"


def test_personal_data_is_redacted_in_the_new_article(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel
) -> None:
    stored(tenant_a, channel_a.pk, "refund to jane.doe@example.com please")
    fields = create_form(alice_client.get(url("learning", tenant_a, kb)))
    assert "jane.doe" not in str(fields)
    # Even a crafted post is redacted again.
    posted = alice_client.post(
        url("learning-create", tenant_a, kb),
        {**fields, "title": "mail jane.doe@example.com", "phrasings": ["call +49 170 1234567 now"]},
    )
    assert posted.status_code == 302
    with tenant_context(tenant_a):
        text = Translation.objects.get(article__key=fields["key"])
    assert "jane.doe" not in text.title and "1234567" not in " ".join(text.phrasings)


def test_counts_per_locale_and_region(
    alice_client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel
) -> None:
    for _n in range(3):
        stored(tenant_a, channel_a.pk, QUESTION)
    stored(tenant_a, channel_a.pk, "Liefert ihr in die Antarktis?", locale="de", region="eu")
    stored(tenant_a, channel_a.pk, "Wie lösche ich mein Konto?", locale="de", region="eu")
    response = alice_client.get(url("learning", tenant_a, kb))
    places = re.findall(
        r'<tr class="place" data-locale="(\w+)" data-region="(\w*)">.*?<td class="groups">(\d+)</td>'
        r'<td class="questions">(\d+)</td>',
        response.content.decode(),
        re.S,
    )
    assert places == [("en", "", "1", "3"), ("de", "eu", "2", "2")]
    only_eu = alice_client.get(url("learning", tenant_a, kb) + "?locale=de&region=eu")
    assert "Antarktis" in page_text(only_eu) and QUESTION not in page_text(only_eu)


def test_a_localization_editor_creates_only_in_their_locales(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, channel_a: Channel, editor: Any
) -> None:
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
    stored(tenant_a, channel_a.pk, QUESTION)
    stored(tenant_a, channel_a.pk, "Liefert ihr in die Antarktis?", locale="de")
    login_verified(client, editor)
    response = client.get(url("learning", tenant_a, kb))
    assert QUESTION not in page_text(response)
    fields = create_form(response)
    assert fields["locale"] == "de"
    refused = client.post(
        url("learning-create", tenant_a, kb), {**fields, "locale": "en", "key": "antarctica"}
    )
    assert refused.status_code == 403
    done = client.post(url("learning-create", tenant_a, kb), {**fields, "key": "antarctica"})
    assert done.status_code == 302
    with tenant_context(tenant_a):
        assert list(
            Translation.objects.filter(article__key="antarctica").values_list("locale", flat=True)
        ) == ["de"]


def test_other_tenants_get_404_and_nothing_is_created(
    alice_client: Client,
    tenant_a: Tenant,
    tenant_b: Tenant,
    kb: KnowledgeBase,
    channel_a: Channel,
    charlie: Any,
) -> None:
    stored(tenant_a, channel_a.pk, QUESTION)
    fields = create_form(alice_client.get(url("learning", tenant_a, kb)))
    with tenant_context(tenant_b):
        kb_b = kb_create(tenant=tenant_b, name="B help", source_locale="en")
    assert alice_client.post(url("learning-create", tenant_a, kb_b.pk), fields).status_code == 404
    other = Client()
    login_verified(other, charlie)
    response = other.post(url("learning-create", tenant_a, kb), fields)
    assert response.status_code == 404 and QUESTION.encode() not in response.content
    assert alice_client.get(url("learning-create", tenant_a, kb)).status_code == 405
    with tenant_context(tenant_a):
        assert not Article.objects.exists() and not LearnedQuestion.objects.exists()
