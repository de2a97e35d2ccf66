"""The exact vector scan for knowledge bases with few chunks (knowledge_search_fuse, EXACT_SCAN_MAX_CHUNKS).

A small tenant searched next to a large one in the same region database must get the answers it gets alone:
the shared HNSW index filters tenants only after its scan, the exact scan reads just the tenant's chunks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.db import connections

from apps.core.context import tenant_context
from apps.knowledge import selectors
from apps.knowledge.embeddings import get_provider
from apps.knowledge.models import Chunk, KnowledgeBase
from apps.knowledge.selectors import (
    exact_vector_scan,
    knowledge_search,
    locale_chain,
    search_chunk_counts,
    search_params,
    vector_literal,
)
from apps.knowledge.services import kb_create, kb_import
from apps.knowledge.version import knowledge_version_bump
from apps.tenants.models import Tenant
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "apps" / "knowledge" / "demo_data" / "help_center.jsonl"
EVAL = Path(__file__).parent / "eval" / "questions.jsonl"
BIG_COPIES = 40  # ~2,900 chunks next to the demo base's 72


def _demo_kb(tenant: Tenant) -> KnowledgeBase:
    with tenant_context(tenant):
        kb = kb_create(
            tenant=tenant,
            name="Help center",
            source_locale="en",
            enabled_locales=["de", "fr", "es", "ja"],
            regions=["EU", "US"],
        )
        kb_import(kb=kb, lines=DEMO.read_text().splitlines(), index_now=True)
    return kb


@pytest.fixture
def small_kb(tenant_a: Tenant) -> KnowledgeBase:
    return _demo_kb(tenant_a)


@pytest.fixture
def big_tenant(region_eu: Any) -> Tenant:
    return TenantFactory.create(slug="tenant-big", name="Big", home_region=region_eu)


def _grow(tenant: Tenant, kb: KnowledgeBase) -> int:
    """Noisy copies of the base's chunks: the nearest neighbours of every demo question, in another tenant."""
    rng = np.random.default_rng(7)
    with tenant_context(tenant):
        originals = list(Chunk.objects.filter(kb=kb))
        copies = []
        for n in range(BIG_COPIES):
            for c in originals:
                vec = np.asarray(c.embedding, dtype=np.float32) + rng.normal(0, 0.01, len(c.embedding))
                copies.append(
                    Chunk(
                        tenant_id=tenant.id,
                        kb_id=kb.pk,
                        translation_id=c.translation_id,
                        article_key=c.article_key,
                        locale=c.locale,
                        region=c.region,
                        chunk_hash=f"{c.chunk_hash[:50]}-{n}",
                        position=c.position,
                        title=c.title,
                        heading_path=c.heading_path,
                        text=c.text,
                        model_id=c.model_id,
                        embedding=(vec / np.linalg.norm(vec)).tolist(),
                        ts_config=c.ts_config,
                    )
                )
        Chunk.objects.bulk_create(copies, batch_size=1000)
    knowledge_version_bump(tenant_id=tenant.id)
    return len(copies)


def _chunks(tenant: Tenant, **filters: Any) -> list[Chunk]:
    with tenant_context(tenant):
        return list(Chunk.objects.filter(**filters))


def _cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EVAL.read_text().splitlines() if line.strip()][:12]


def _search_all(tenant: Tenant) -> list[list[tuple[str, str, str]]]:
    return [
        [
            (h.article_key, h.locale, h.text)
            for h in knowledge_search(
                tenant=tenant, query=c["question"], locale=c["locale"], region=c["region"]
            )
        ]
        for c in _cases()
    ]


def _fuse(tenant: Tenant, kb_ids: list[str], model: str, vector: Any, *, exact: bool) -> list[Any]:
    """The vector half and the fusion alone (no full-text candidates), as knowledge_search calls them."""
    params = search_params(
        tenant_id=tenant.id,
        query="x",
        chain=locale_chain(locale="en"),
        kb_ids=kb_ids,
        model_id=model,
        region="",
        k=5,
        exact=exact,
    )
    params.update(vec=vector_literal(vector), fts_ids="{}", fts_kb_ids="{}", fts_article_keys="{}")
    with connections[tenant.home_region.db_alias].cursor() as cursor:
        cursor.execute(selectors._FUSE_SQL, params)
        return cursor.fetchall()


def test_the_exact_scan_ranks_articles_as_an_exact_reference(
    tenant_a: Tenant, small_kb: KnowledgeBase
) -> None:
    vector = get_provider().embed_query("How long until my money is refunded?")
    hits = _fuse(tenant_a, [str(small_kb.pk)], small_kb.embedding_model, vector, exact=True)
    with connections[tenant_a.home_region.db_alias].cursor() as cursor:
        cursor.execute(
            "SELECT article_key FROM knowledge_chunk c WHERE tenant_id = %s AND kb_id = %s AND locale = 'en'"
            " AND region = '' AND status = 'published'"
            " GROUP BY article_key ORDER BY min((embedding::halfvec(512)) <=> %s::halfvec(512)) LIMIT 5",
            [tenant_a.id, small_kb.pk, vector_literal(vector)],
        )
        reference = [row[0] for row in cursor.fetchall()]
    assert [row[2] for row in hits][:5] == reference  # the rerank candidates, in fused order
    assert reference[0] == "refund-timing"
    # The relevance is the similarity of the nearest chunk of any kind (a title or phrasing may be nearest).
    nearest = max(
        float(e @ vector / np.linalg.norm(e) / np.linalg.norm(vector))
        for e in (np.asarray(c.embedding) for c in _chunks(tenant_a, kb=small_kb, locale="en", region=""))
    )
    assert hits[0][9] == pytest.approx(nearest, abs=2e-3)


def test_a_small_tenant_next_to_a_big_one_gets_the_answers_it_gets_alone(
    tenant_a: Tenant, small_kb: KnowledgeBase, big_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "EXACT_SCAN_MAX_CHUNKS", 1000)  # the big tenant's few thousand: HNSW
    alone = _search_all(tenant_a)
    big_kb = _demo_kb(big_tenant)
    added = _grow(big_tenant, big_kb)
    small_counts = search_chunk_counts(tenant=tenant_a)
    big_counts = search_chunk_counts(tenant=big_tenant)
    assert small_counts == {str(small_kb.pk): len(_chunks(tenant_a, kb=small_kb))}
    assert big_counts == {str(big_kb.pk): small_counts[str(small_kb.pk)] + added}
    assert exact_vector_scan(chunks=small_counts, kb_ids=[str(small_kb.pk)]) is True
    assert exact_vector_scan(chunks=big_counts, kb_ids=[str(big_kb.pk)]) is False
    assert _search_all(tenant_a) == alone
    # The big tenant still answers (through the HNSW index).
    hits = knowledge_search(tenant=big_tenant, query="How long until my money is refunded?", locale="en")
    assert hits[0].article_key == "refund-timing" and hits[0].kb_id == str(big_kb.pk)


def test_the_exact_scan_never_returns_another_tenants_chunks(
    tenant_a: Tenant, small_kb: KnowledgeBase, big_tenant: Tenant
) -> None:
    big_kb = _demo_kb(big_tenant)
    _grow(big_tenant, big_kb)
    big_ids = {c.pk for c in _chunks(big_tenant)}
    vector = get_provider().embed_query("How long until my money is refunded?")
    # Asked with the other tenant's knowledge base too: its rows are filtered by tenant, not only by base.
    both = [str(small_kb.pk), str(big_kb.pk)]
    hits = _fuse(tenant_a, both, small_kb.embedding_model, vector, exact=True)
    assert hits and {row[1] for row in hits} == {small_kb.pk}
    assert not {row[0] for row in hits} & big_ids
    assert _fuse(tenant_a, [str(big_kb.pk)], small_kb.embedding_model, vector, exact=True) == []
    for hit in knowledge_search(tenant=tenant_a, query="refund", locale="en", k=10):
        assert hit.kb_id == str(small_kb.pk) and hit.chunk_id not in big_ids


def test_the_chunk_count_follows_the_knowledge_version(tenant_a: Tenant, small_kb: KnowledgeBase) -> None:
    before = search_chunk_counts(tenant=tenant_a)[str(small_kb.pk)]
    line = {
        "key": "loyalty-points",
        "locale": "en",
        "title": "Loyalty points",
        "body": "Loyalty points never expire.",
        "status": "published",
    }
    with tenant_context(tenant_a):
        kb_import(kb=small_kb, lines=[json.dumps(line)], index_now=True)  # bumps the version
    after = search_chunk_counts(tenant=tenant_a)[str(small_kb.pk)]
    assert after == before + 2 == len(_chunks(tenant_a, kb=small_kb))  # its text and its title
    hits = knowledge_search(tenant=tenant_a, query="Do loyalty points expire?", locale="en")
    assert hits[0].article_key == "loyalty-points"
