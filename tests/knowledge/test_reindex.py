"""Indexing: bulk inserts with every field, only changed text embedded, failures store nothing, and a model
switch that re-indexes in the background while search uses the old vectors."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.core.context import tenant_context
from apps.knowledge.embeddings import EmbeddingError, UseProvider, get_provider
from apps.knowledge.indexing import EMBED_BATCH, kb_reindex, translations_index
from apps.knowledge.models import Chunk, ChunkKind
from apps.knowledge.selectors import knowledge_search
from apps.knowledge.services import kb_create, kb_reindex_start, translation_publish, translation_save
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


class NextModel(UseProvider):
    """A "new" model for the test: the same vectors under another model id."""

    model_id = "use-multilingual-v3-next"


def test_model_switch_without_downtime(tenant_a: Tenant, alice: Any, settings: Any, run_tasks: Any) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Docs", source_locale="en", four_eyes=False)
        t = translation_save(kb=kb, key="pw", locale="en", title="Reset your password", body="Use the link.")
        translation_publish(translation=t, actor=alice)
    settings.HUB_EMBEDDING_PROVIDER = "tests.knowledge.test_reindex.NextModel"
    settings.HUB_EMBEDDING_PREVIOUS_PROVIDERS = ["apps.knowledge.embeddings.UseProvider"]
    assert get_provider().model_id == "use-multilingual-v3-next"
    with tenant_context(tenant_a), mock.patch("apps.knowledge.services._on_commit"):  # not run yet
        assert kb_reindex_start(kb=kb, actor=alice)
        kb.refresh_from_db()
        assert (kb.embedding_model, kb.reindex_model) == ("use-multilingual-v3", "use-multilingual-v3-next")
    # Meanwhile search answers from the old vectors, and new publishes are indexed for both models.
    assert knowledge_search(tenant=tenant_a, query="forgot password", locale="en")[0].article_key == "pw"
    with tenant_context(tenant_a):
        t2 = translation_save(kb=kb, key="ship", locale="en", title="Shipping", body="Three days.")
        translation_publish(translation=t2, actor=alice)
        assert set(Chunk.objects.filter(translation=t2).values_list("model_id", flat=True)) == {
            "use-multilingual-v3",
            "use-multilingual-v3-next",
        }
        kb_reindex(kb_id=str(kb.pk))
        kb.refresh_from_db()
        assert (kb.embedding_model, kb.reindex_model) == ("use-multilingual-v3-next", "")
        assert set(Chunk.objects.values_list("model_id", flat=True)) == {"use-multilingual-v3-next"}
        assert not kb_reindex_start(kb=kb)  # already current
    assert knowledge_search(tenant=tenant_a, query="forgot password", locale="en")[0].article_key == "pw"


class FailingModel(UseProvider):
    """The current model, failing on a text that says FAIL (an endpoint or model error mid-way)."""

    def embed(self, texts: Any) -> Any:
        if any("FAIL" in text for text in texts):
            raise EmbeddingError("model failed")
        return super().embed(texts)


BODY = (
    "## Returns\n\nWithin 30 days.\n\n"
    "## Refunds\n\nTo the original card.\n\n### Gift cards\n\nNot refundable."
)


def test_bulk_index_stores_every_field_and_embeds_only_changes(
    tenant_a: Tenant, alice: Any, run_tasks: Any
) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Docs", source_locale="de", regions=["eu"], four_eyes=False)
        t = translation_save(kb=kb, key="returns", locale="de", region="eu", title="Rückgabe", body=BODY)
        translation_publish(translation=t, actor=alice)
        chunks = list(Chunk.objects.filter(translation=t, kind=ChunkKind.CONTENT).order_by("position"))
        assert [c.heading_path for c in chunks] == [["Returns"], ["Refunds"], ["Refunds", "Gift cards"]]
        assert [c.text for c in chunks] == ["Within 30 days.", "To the original card.", "Not refundable."]
        first = chunks[0]
        assert (first.tenant_id, first.kb_id, first.article_key) == (tenant_a.id, kb.pk, "returns")
        assert (first.locale, first.region, first.status, first.ts_config) == (
            "de",
            "eu",
            "published",
            "german",
        )
        assert first.model_id == "use-multilingual-v3" and first.created_at is not None
        vector = np.asarray(first.embedding)
        assert vector.shape == (512,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
        # Title and headings weigh A, body text B (German stemming).
        assert str(first.tsv) == "'30':4B 'days':5B 'return':2A 'ruckgab':1A 'within':3B"
        # The title is a chunk of its own, after the pieces: its words alone, no headings.
        title = Chunk.objects.get(translation=t, kind=ChunkKind.TITLE)
        assert (title.text, title.heading_path, title.position, str(title.tsv)) == (
            "Rückgabe",
            [],
            3,
            "'ruckgab':1A",
        )

        assert translations_index(translation_ids=[t.pk]) == 0  # unchanged: nothing embedded
        t = translation_save(
            kb=kb,
            key="returns",
            locale="de",
            region="eu",
            title="Rückgabe",
            body=BODY.replace("30 days", "60 days"),
        )
        translation_publish(translation=t, actor=alice)
        after = list(Chunk.objects.filter(translation=t, kind=ChunkKind.CONTENT).order_by("position"))
        assert [c.text for c in after] == ["Within 60 days.", "To the original card.", "Not refundable."]
        assert [c.pk for c in after[1:]] == [c.pk for c in chunks[1:]]  # kept, not re-embedded
        assert after[0].pk not in {c.pk for c in chunks}


def test_a_failing_model_stores_nothing_and_keeps_the_old_chunks(
    tenant_a: Tenant, alice: Any, settings: Any, run_tasks: Any
) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Docs", source_locale="en", four_eyes=False)
        t = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=BODY)
        translation_publish(translation=t, actor=alice)
        before = set(Chunk.objects.filter(translation=t).values_list("pk", "text"))
        settings.HUB_EMBEDDING_PROVIDER = "tests.knowledge.test_reindex.FailingModel"
        # More chunks than one embedding batch, the failing one last: the first batch is inserted by then.
        parts = "".join(f"\n\n## Part {i}\n\nStep {i}." for i in range(EMBED_BATCH + 10))
        body = BODY + parts + "\n\n## FAIL\n\nx"
        t = translation_save(kb=kb, key="returns", locale="en", title="Returns", body=body)
        with mock.patch("apps.knowledge.services._on_commit"):  # indexed below, not on publish
            translation_publish(translation=t, actor=alice)
        with pytest.raises(EmbeddingError):
            translations_index(translation_ids=[t.pk])
        assert set(Chunk.objects.filter(translation=t).values_list("pk", "text")) == before


def test_use_threads_option_is_checked() -> None:
    assert UseProvider().threads == 1
    assert UseProvider(threads=2).threads == 2
    for bad in (0, 65, "2", True, 1.5):
        with pytest.raises(ImproperlyConfigured, match="threads"):
            UseProvider(threads=bad)
