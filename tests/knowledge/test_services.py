"""Content model and workflow: revisions, four-eyes review, needs-update marking, coverage, indexing."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.knowledge.models import (
    Chunk,
    ChunkKind,
    KnowledgeBase,
    RegionalVariant,
    Revision,
    Status,
    Translation,
)
from apps.knowledge.selectors import kb_coverage
from apps.knowledge.services import (
    kb_create,
    kb_import,
    kb_update,
    translation_archive,
    translation_publish,
    translation_reject,
    translation_save,
    translation_submit,
)
from apps.tenants.models import Membership, Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory

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
    assert Chunk.objects.filter(translation=t, kind=ChunkKind.CONTENT).count() == 2  # one per heading section


def test_without_four_eyes_the_author_may_publish(in_tenant_a: Tenant, alice: Any, run_tasks: None) -> None:
    kb = kb_create(tenant=in_tenant_a, name="Small", source_locale="en", four_eyes=False)
    t = translation_save(kb=kb, key="a", locale="en", title="A", body="Text", author=alice)
    translation_publish(translation=t, actor=alice)
    assert Chunk.objects.filter(translation=t, kind=ChunkKind.CONTENT).count() == 1


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
    first = dict(Chunk.objects.filter(translation=t, kind=ChunkKind.CONTENT).values_list("chunk_hash", "pk"))
    t = translation_save(
        kb=kb,
        key="returns",
        locale="en",
        title="Returns",
        body=BODY.replace("5 days", "7 days"),
        author=alice,
    )
    assert t.status == Status.DRAFT
    assert (
        dict(Chunk.objects.filter(translation=t, kind=ChunkKind.CONTENT).values_list("chunk_hash", "pk"))
        == first
    )  # still live
    publish(t, reviewer=reviewer)
    second = dict(Chunk.objects.filter(translation=t, kind=ChunkKind.CONTENT).values_list("chunk_hash", "pk"))
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


# --- permissions inside the services -----------------------------------------------------------------------
def limit(user: Any, tenant: Tenant, *, locales: list[str], regions: list[str] | None = None) -> None:
    Membership.objects.filter(user=user, tenant=tenant).update(locales=locales, regions=regions or [])


def test_writes_check_the_role(in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any, bob: Any) -> None:
    with pytest.raises(PermissionDenied, match="Your role in this tenant does not allow this"):
        translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=bob)
    assert not Translation.objects.exists()
    t = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY, author=alice)
    for call in (
        lambda: translation_submit(translation=t, actor=bob),
        lambda: translation_publish(translation=t, actor=bob),
        lambda: translation_archive(translation=t, actor=bob),
        lambda: translation_reject(translation=t, actor=bob, reason="No."),
        lambda: kb_create(tenant=in_tenant_a, name="Bob's", source_locale="en", actor=bob),
        lambda: kb_update(kb=kb, four_eyes=False, actor=bob),
        lambda: kb_import(kb=kb, lines=[], actor=bob),
    ):
        with pytest.raises(PermissionDenied):
            call()
    t.refresh_from_db()
    assert t.status == Status.DRAFT and KnowledgeBase.objects.count() == 1 and kb.four_eyes


def test_editors_edit_and_review_but_do_not_manage_bases(
    in_tenant_a: Tenant, kb: KnowledgeBase, editor: Any, reviewer: Any, run_tasks: None
) -> None:
    t = translation_save(kb=kb, key="a", locale="en", title="A", body="Text", author=editor)
    translation_submit(translation=t, actor=editor)
    translation_publish(translation=t, actor=reviewer)
    assert t.status == Status.PUBLISHED
    with pytest.raises(PermissionDenied):
        kb_create(tenant=in_tenant_a, name="Mine", source_locale="en", actor=editor)
    with pytest.raises(PermissionDenied):
        kb_import(kb=kb, lines=[], actor=editor)


def test_connector_manager_may_not_publish(in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any) -> None:
    connor = UserFactory.create(username="connor")
    membership_add(tenant=in_tenant_a, user=connor, role=Role.CONNECTOR_MANAGER)
    t = translation_submit(
        translation=translation_save(kb=kb, key="a", locale="en", title="A", body="x", author=alice)
    )
    with pytest.raises(PermissionDenied):
        translation_publish(translation=t, actor=connor)
    assert Translation.objects.get(pk=t.pk).status == Status.IN_REVIEW


def test_locale_and_region_limits(
    in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any, editor: Any, reviewer: Any
) -> None:
    limit(editor, in_tenant_a, locales=["de"], regions=["US"])  # stored in any case: compared as codes
    with pytest.raises(PermissionDenied, match="You may not edit texts in fr"):
        translation_save(kb=kb, key="a", locale="fr", title="A", body="x", author=editor)
    with pytest.raises(PermissionDenied, match="You may not edit texts in de/eu"):
        translation_save(kb=kb, key="a", locale="de", region="EU", title="A", body="x", author=editor)
    de = translation_save(kb=kb, key="a", locale="de", title="A", body="x", author=editor)
    de_us = translation_save(kb=kb, key="a", locale="de", region="us", title="A", body="x", author=editor)
    assert (de.region, de_us.region) == ("", "us")
    assert set(Translation.objects.values_list("locale", "region")) == {("de", ""), ("de", "us")}
    # The reviewer side: lena may not approve or reject outside her locales either.
    en = translation_submit(
        translation=translation_save(kb=kb, key="b", locale="en", title="B", body="x", author=alice)
    )
    with pytest.raises(PermissionDenied):
        translation_publish(translation=en, actor=editor)
    with pytest.raises(PermissionDenied):
        translation_reject(translation=en, actor=editor, reason="No.")
    with pytest.raises(PermissionDenied):
        translation_submit(translation=en, actor=editor)
    assert Translation.objects.get(pk=en.pk).status == Status.IN_REVIEW


def test_platform_operator_and_system_may_write(
    in_tenant_a: Tenant, kb: KnowledgeBase, operator: Any
) -> None:
    t = translation_save(kb=kb, key="a", locale="ja", title="A", body="x", author=operator)
    assert Revision.objects.get(translation=t).author_id == operator.pk
    translation_save(kb=kb, key="a", locale="fr", title="A", body="x")  # actor None: the system


def test_reject_service(in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> None:
    t = translation_save(kb=kb, key="a", locale="en", title="A", body="x", author=alice)
    with pytest.raises(Conflict, match="Only a text in review can be rejected"):
        translation_reject(translation=t, actor=reviewer, reason="No.")
    translation_submit(translation=t, actor=alice)
    for reason, message in (("  ", "Say what has to change"), ("x" * 2001, "at most 2000 characters")):
        with pytest.raises(ValidationFailed) as exc:
            translation_reject(translation=t, actor=reviewer, reason=reason)
        assert message in exc.value.errors["reason"][0]
    translation_reject(translation=t, actor=reviewer, reason="Too short.")
    t.refresh_from_db()
    assert (t.status, t.rejection_reason, t.rejected_by_id) == (Status.DRAFT, "Too short.", reviewer.pk)
    assert AuditEvent.objects.get(action="knowledge.rejected").changes["reason"] == "Too short."
    assert t.published_revision is None


# --- region codes ------------------------------------------------------------------------------------------
def test_regions_are_the_hub_region_codes(in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any) -> None:
    assert kb.regions == ["eu", "us"]  # the fixture passes "EU", "US"
    with pytest.raises(ValidationFailed) as exc:
        kb_create(tenant=in_tenant_a, name="Mars", source_locale="en", regions=["mars", "EU"])
    assert exc.value.errors["regions"] == ["Unknown region mars: use one of eu, us."]
    with pytest.raises(ValidationFailed) as exc:
        kb_update(kb=kb, regions=["e-u"])
    assert "regions" in exc.value.errors
    kb_update(kb=kb, regions=[" US "], actor=alice)
    assert KnowledgeBase.objects.get(pk=kb.pk).regions == ["us"]
    with pytest.raises(ValidationFailed) as exc:
        translation_save(kb=kb, key="a", locale="en", region="eu", title="A", body="x", author=alice)
    assert exc.value.errors["region"] == ["This knowledge base does not serve the region eu."]


def test_migration_lower_cases_existing_regions(in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any) -> None:
    migration = importlib.import_module("apps.knowledge.migrations.0002_region_codes_and_rejection")
    t = translation_save(kb=kb, key="a", locale="en", region="eu", title="A", body="x", author=alice)
    with connections[in_tenant_a.home_region.db_alias].cursor() as cursor:
        cursor.execute(migration.UPPER)  # the data as it was before: free upper-case labels
        cursor.execute("SELECT regions FROM knowledge_knowledgebase WHERE id = %s", [kb.pk])
        assert cursor.fetchone()[0] == ["EU", "US"]
        cursor.execute(migration.LOWER)
    kb.refresh_from_db()
    t.refresh_from_db()
    assert (kb.regions, t.region) == (["eu", "us"], "eu")


def test_an_import_looks_the_actor_up_once(in_tenant_a: Tenant, kb: KnowledgeBase, alice: Any) -> None:
    lines = [
        json.dumps({"key": f"a{n}", "locale": "en", "title": f"A{n}", "body": "x", "status": "draft"})
        for n in range(5)
    ]
    actor = type(alice).objects.get(pk=alice.pk)  # a fresh object, as in a new request or command
    with CaptureQueriesContext(connections["default"]) as control:
        result = kb_import(kb=kb, lines=lines, actor=actor)
    assert result.saved == 5
    assert sum("tenants_membership" in q["sql"] for q in control.captured_queries) == 1
