"""Content model and workflow: revisions, four-eyes review, needs-update marking, coverage, indexing."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.knowledge.models import Chunk, KnowledgeBase, RegionalVariant, Revision, Status, Translation
from apps.knowledge.selectors import kb_coverage
from apps.knowledge.services import (
    kb_create,
    translation_archive,
    translation_publish,
    translation_save,
    translation_submit,
)
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db

BODY = "# Returns\n\nYou can return items within 30 days.\n\n## Refunds\n\nRefunds take 5 days."


def publish(t: Translation, *, reviewer: Any) -> Translation:
    if t.status == Status.DRAFT:
        translation_submit(translation=t)
    return translation_publish(translation=t, actor=reviewer)


def test_kb_name_unique_and_locales_validated(in_tenant_a: Tenant, kb: KnowledgeBase) -> None:
    with pytest.raises(ValidationFailed) as exc:
        kb_create(tenant=in_tenant_a, name="Help center", source_locale="en")
    assert "name" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        kb_create(tenant=in_tenant_a, name="Other", source_locale="english", regions=["e u"])
    assert {"source_locale", "regions"} <= set(exc.value.errors)
    assert kb.locales == ["en", "de", "fr", "es", "ja"]
    assert kb.embedding_model == "use-multilingual-v3"


def test_every_save_writes_a_revision(in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any) -> None:
    t = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=alice)
    translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=alice)  # no change
    translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY + "!", author=alice)
    assert list(Revision.objects.filter(translation=t).values_list("number", flat=True)) == [2, 1]
    assert Revision.objects.filter(translation=t).first().author_id == alice.pk  # type: ignore[union-attr]


def test_bad_input_is_field_errors(in_tenant_a: Tenant, kb: KnowledgeBase) -> None:
    with pytest.raises(ValidationFailed) as exc:
        translation_save(kb=kb, key="Bad Key!", locale="it", region="MARS", title="", body="")
    assert {"key", "locale", "region", "title"} <= set(exc.value.errors)


def test_four_eyes(
    in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any, run_tasks: None
) -> None:
    t = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=alice)
    with pytest.raises(Conflict, match="review"):
        translation_publish(translation=t, actor=reviewer)  # still a draft
    translation_submit(translation=t)
    with pytest.raises(Conflict, match="someone else"):
        translation_publish(translation=t, actor=alice)
    translation_publish(translation=t, actor=reviewer)
    t.refresh_from_db()
    assert t.status == Status.PUBLISHED and t.published_revision is not None
    event = AuditEvent.objects.filter(action="knowledge.published").get()
    assert event.actor_id == reviewer.pk and event.changes["revision"] == 1
    assert Chunk.objects.filter(translation=t).count() == 2  # one per heading section


def test_without_four_eyes_the_author_may_publish(in_tenant_a: Tenant, alice: Any, run_tasks: None) -> None:
    kb = kb_create(tenant=in_tenant_a, name="Small", source_locale="en", four_eyes=False)
    t = translation_save(kb=kb, key="a", locale="en", title="A", body="Text", author=alice)
    translation_publish(translation=t, actor=alice)
    assert Chunk.objects.filter(translation=t).count() == 1


def test_source_change_marks_translations_needs_update(
    in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any, run_tasks: None
) -> None:
    en = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=alice)
    de = translation_save(kb=kb, key="returns", locale="de", title="Rückgabe", body="Text", author=alice)
    de_eu = translation_save(
        kb=kb, key="returns", locale="de", region="eu", title="Rückgabe EU", body="14 Tage", author=alice
    )
    assert de.source_revision_id == Revision.objects.get(translation=en).pk
    assert RegionalVariant.objects.get().pk == de_eu.pk and de_eu.region == "eu"
    publish(de, reviewer=reviewer)
    translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY + " More.", author=alice)
    de.refresh_from_db()
    de_eu.refresh_from_db()
    assert de.needs_update and de_eu.needs_update
    coverage = {c.locale: c for c in kb_coverage(kb=kb)}
    assert (coverage["de"].needs_update, coverage["de"].published) == (1, 0)
    assert (coverage["en"].in_progress, coverage["fr"].missing) == (1, 1)
    # Bringing the translation up to date clears the flag and records which source it follows.
    translation_save(kb=kb, key="returns", locale="de", title="Rückgabe", body="Neu", author=alice)
    de.refresh_from_db()
    assert not de.needs_update
    assert de.source_revision == Revision.objects.filter(translation=en).first()


def test_edit_keeps_published_live_and_unchanged_chunks_are_not_reembedded(
    in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any, run_tasks: None
) -> None:
    t = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=alice)
    publish(t, reviewer=reviewer)
    first = dict(Chunk.objects.filter(translation=t).values_list("chunk_hash", "pk"))
    t = translation_save(
        kb=kb,
        key="returns",
        locale="en",
        title="Returns",
        body=BODY.replace("5 days", "7 days"),
        author=alice,
    )
    assert t.status == Status.DRAFT
    assert dict(Chunk.objects.filter(translation=t).values_list("chunk_hash", "pk")) == first  # still live
    publish(t, reviewer=reviewer)
    second = dict(Chunk.objects.filter(translation=t).values_list("chunk_hash", "pk"))
    assert len(second) == 2 and len(set(first.items()) & set(second.items())) == 1  # only one re-embedded
    chunk = Chunk.objects.get(translation=t, position=1)
    assert chunk.heading_path == ["Returns", "Refunds"] and chunk.text == "Refunds take 7 days."


def test_archive_removes_chunks_and_is_audited(
    in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any, run_tasks: None
) -> None:
    t = publish(
        translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=alice),
        reviewer=reviewer,
    )
    assert Chunk.objects.filter(translation=t).exists()
    translation_archive(translation=t, actor=alice)
    assert not Chunk.objects.filter(translation=t).exists()
    assert AuditEvent.objects.filter(action="knowledge.archived").exists()
    with pytest.raises(Conflict):
        translation_archive(translation=t, actor=alice)


def test_tenant_b_cannot_see_tenant_a_knowledge(
    tenant_a: Tenant, tenant_b: Tenant, kb: KnowledgeBase
) -> None:
    with tenant_context(tenant_b):
        assert not KnowledgeBase.objects.exists()
