"""Phrasings: other ways customers ask what a text answers — validated, versioned, indexed, never cited."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.core.context import tenant_context
from apps.knowledge.models import Chunk, ChunkKind, Revision
from apps.knowledge.selectors import kb_export_rows, knowledge_search
from apps.knowledge.services import (
    ValidationFailed,
    kb_create,
    kb_import,
    translation_publish,
    translation_save,
)
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db

BODY = "# Sofa care\n\nVacuum the cushions weekly and blot spills at once with a damp cloth."


def test_phrasings_are_cleaned_versioned_and_indexed_as_their_own_chunks(
    tenant_a: Tenant, alice: Any, run_tasks: Any
) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Care", source_locale="en", four_eyes=False)
        t = translation_save(
            kb=kb,
            key="sofa-care",
            locale="en",
            title="Caring for your sofa",
            body=BODY,
            phrasings=["  red wine   on my couch ", "Red wine on my couch", "", "how do I clean the settee?"],
        )
        assert t.phrasings == ["red wine on my couch", "how do I clean the settee?"]  # trimmed, deduplicated
        assert Revision.objects.get(translation=t).phrasings == t.phrasings
        translation_publish(translation=t, actor=alice)
        kinds = sorted(Chunk.objects.filter(translation=t).values_list("kind", "text"))
        assert kinds == [
            ("content", "Vacuum the cushions weekly and blot spills at once with a damp cloth."),
            ("phrasing", "how do I clean the settee?"),
            ("phrasing", "red wine on my couch"),
            ("title", "Caring for your sofa"),
        ]
        hits = knowledge_search(tenant=tenant_a, query="red wine on my couch", locale="en")
        # Found through the phrasing (the nearest chunk, so the relevance is ~1), cited with its text.
        assert hits[0].article_key == "sofa-care" and hits[0].relevance > 0.95
        assert hits[0].text.startswith("Vacuum the cushions")
        content_ids = set(Chunk.objects.filter(kind=ChunkKind.CONTENT).values_list("pk", flat=True))
        assert hits[0].chunk_id in content_ids

        # Changing only the phrasings is a change: a new revision, and the content chunk is kept.
        kept = Chunk.objects.get(translation=t, kind=ChunkKind.CONTENT).pk
        t = translation_save(
            kb=kb,
            key="sofa-care",
            locale="en",
            title="Caring for your sofa",
            body=BODY,
            phrasings=["couch stain"],
        )
        assert Revision.objects.filter(translation=t).count() == 2
        translation_publish(translation=t, actor=alice)
        assert Chunk.objects.get(translation=t, kind=ChunkKind.CONTENT).pk == kept
        assert list(
            Chunk.objects.filter(translation=t, kind=ChunkKind.PHRASING).values_list("text", flat=True)
        ) == ["couch stain"]
        # None keeps them (an edit that does not show phrasings does not drop them).
        t = translation_save(
            kb=kb, key="sofa-care", locale="en", title="Caring for your sofa", body=BODY + "\n"
        )
        assert t.phrasings == ["couch stain"]


@pytest.mark.parametrize(
    ("phrasings", "message"),
    [
        (["x" * 201], "too long"),
        (["<b>bold</b> question"], "plain text"),
        ([f"question {n}" for n in range(41)], "at most 40"),
        ([3], "must be text"),
    ],
)
def test_bad_phrasings_are_refused_with_a_field_error(
    tenant_a: Tenant, phrasings: list[Any], message: str
) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Care", source_locale="en")
        with pytest.raises(ValidationFailed) as caught:
            translation_save(kb=kb, key="a", locale="en", title="A", body="Text.", phrasings=phrasings)
    assert any(message in m for m in caught.value.errors["phrasings"])


def test_import_and_export_carry_phrasings(tenant_a: Tenant) -> None:
    line = {"key": "a", "locale": "en", "title": "A", "body": "Text.", "phrasings": ["is there an a?"]}
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Care", source_locale="en")
        kb_import(kb=kb, lines=[json.dumps(line)])
        assert [row["phrasings"] for row in kb_export_rows(kb=kb)] == [["is there an a?"]]
        with pytest.raises(ValidationFailed) as caught:
            kb_import(kb=kb, lines=[json.dumps({**line, "phrasings": "not a list"})])
    assert "line 1: phrasings must be a list of strings" in caught.value.errors["lines"]
