"""Review: rejecting with a reason (back to draft, audited, shown to the editor, cleared on resubmit),
four-eyes approval from the editor page, and who may reject what."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Status, Translation
from apps.knowledge.services import translation_save, translation_submit
from apps.tenants.models import Membership, Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(f"knowledge:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


@pytest.fixture
def in_review(tenant_a: Tenant, kb: KnowledgeBase, alice: Any) -> Translation:
    """The English "shipping" text, written by alice and submitted for review."""
    with tenant_context(tenant_a):
        t = translation_save(
            kb=kb, key="shipping", locale="en", title="Shipping", body="3 days.", author=alice
        )
        return translation_submit(translation=t, actor=alice)


def test_reject_sends_the_text_back_with_the_reason(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, in_review: Translation, alice: Any, reviewer: Any
) -> None:
    login_verified(client, reviewer)
    queue = client.get(url("review-queue", tenant_a)).content.decode()
    assert url("review-reject", tenant_a, pk=in_review.pk) in queue
    editor = url("editor", tenant_a, kb_id=kb.pk, key="shipping", locale="en")
    assert f'href="{editor}"' in queue  # the title opens the editor with its diff
    response = client.post(
        url("review-reject", tenant_a, pk=in_review.pk), {"reason": "  Name the carrier.  "}, follow=True
    )
    assert "“Shipping” (en) went back to its editors." in text(response)
    assert "Nothing to review" in text(response)
    with tenant_context(tenant_a):
        t = Translation.objects.get(pk=in_review.pk)
        assert (t.status, t.rejection_reason, t.rejected_by_id) == (
            Status.DRAFT,
            "Name the carrier.",
            reviewer.pk,
        )
        assert t.rejected_at is not None
        event = AuditEvent.objects.get(action="knowledge.rejected")
        assert event.actor_id == reviewer.pk and event.changes["reason"] == "Name the carrier."
        assert event.changes["revision"] == 1 and event.target_label == "Help center: shipping (en)"
    # alice sees why in the editor, then resubmits: the reason is answered and cleared.
    login_verified(client, alice)
    page = text(client.get(editor))
    assert "Sent back by the reviewer (rita" in page and "Name the carrier." in page
    client.post(editor, {"title": "Shipping", "body": "3 days with DHL.", "submit": "1"})
    with tenant_context(tenant_a):
        t.refresh_from_db()
        assert (t.status, t.rejection_reason, t.rejected_by_id) == (Status.IN_REVIEW, "", None)
    assert "Sent back by the reviewer" not in text(client.get(editor))


def test_reject_needs_a_reason_and_a_text_in_review(
    client: Client, tenant_a: Tenant, in_review: Translation, reviewer: Any
) -> None:
    login_verified(client, reviewer)
    reject = url("review-reject", tenant_a, pk=in_review.pk)
    response = client.post(reject, {"reason": "   "}, follow=True)
    assert response.status_code == 200 and "This field is required." in text(response)
    response = client.post(reject, {"reason": "x" * 2001}, follow=True)
    assert "Ensure this value has at most 2000 characters" in text(response)
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=in_review.pk).status == Status.IN_REVIEW
    client.post(reject, {"reason": "No."})
    response = client.post(reject, {"reason": "Again."}, follow=True)
    assert "Only a text in review can be rejected." in text(response)
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="knowledge.rejected").count() == 1
    assert client.post(url("review-reject", tenant_a, pk=999999), {"reason": "x"}).status_code == 404
    assert client.get(reject).status_code == 405


def test_four_eyes_from_the_editor_page(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, in_review: Translation, alice: Any, reviewer: Any
) -> None:
    editor = url("editor", tenant_a, kb_id=kb.pk, key="shipping", locale="en")
    approve = url("review-approve", tenant_a, pk=in_review.pk)
    login_verified(client, alice)
    html = client.get(editor).content.decode()
    assert f'action="{approve}"' in html and url("review-reject", tenant_a, pk=in_review.pk) in html
    response = client.post(approve, follow=True)
    assert "someone else has to approve it" in text(response)
    login_verified(client, reviewer)
    response = client.post(approve, follow=True)
    assert "“Shipping” (en) is published." in text(response)
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=in_review.pk).status == Status.PUBLISHED
    assert f'action="{approve}"' not in client.get(editor).content.decode()  # nothing left to review


def test_who_may_reject(
    client: Client,
    tenant_a: Tenant,
    in_review: Translation,
    editor: Any,
    bob: Any,
    charlie: Any,
) -> None:
    reject = url("review-reject", tenant_a, pk=in_review.pk)
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"])
    login_verified(client, editor)
    assert client.post(reject, {"reason": "x"}).status_code == 403  # an English text, lena edits German
    login_verified(client, bob)
    assert client.post(reject, {"reason": "x"}).status_code == 403
    connor = UserFactory.create(username="connor")
    membership_add(tenant=tenant_a, user=connor, role=Role.CONNECTOR_MANAGER)
    login_verified(client, connor)
    assert client.post(reject, {"reason": "x"}).status_code == 403
    login_verified(client, charlie)
    assert client.post(reject, {"reason": "x"}).status_code == 404
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=in_review.pk).status == Status.IN_REVIEW
        assert not AuditEvent.objects.filter(action="knowledge.rejected").exists()
