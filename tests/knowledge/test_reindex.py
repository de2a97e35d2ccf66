"""A model switch re-indexes in the background; search uses the old vectors until the switch."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from apps.core.context import tenant_context
from apps.knowledge.embeddings import UseProvider, get_provider
from apps.knowledge.indexing import kb_reindex
from apps.knowledge.models import Chunk
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
