"""Hybrid multilingual retrieval over the demo knowledge base, and the evaluation set's recall@3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core.context import tenant_context
from apps.knowledge import selectors
from apps.knowledge.embeddings import EmbeddingError, get_provider
from apps.knowledge.models import Chunk, KnowledgeBase
from apps.knowledge.selectors import (
    DISTANCE_SQL,
    LOCALIZED_TSV_SQL,
    knowledge_search,
    locale_chain,
    search_kbs,
    search_params,
    search_statement,
)
from apps.knowledge.services import kb_create, kb_import
from apps.knowledge.version import knowledge_version_bump
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "apps" / "knowledge" / "demo_data" / "help_center.jsonl"
EVAL = Path(__file__).parent / "eval" / "questions.jsonl"
RECALL_AT_3_MIN = 0.95  # measured 1.0 (42 questions, 5 languages); two misses fail the test


@pytest.fixture
def demo_kb(tenant_a: Tenant) -> KnowledgeBase:
    with tenant_context(tenant_a):
        kb = kb_create(
            tenant=tenant_a,
            name="Help center",
            source_locale="en",
            enabled_locales=["de", "fr", "es", "ja"],
            regions=["EU", "US"],
        )
        kb_import(kb=kb, lines=DEMO.read_text().splitlines(), index_now=True)
    return kb


def keys(hits: list[Any]) -> list[str]:
    return [h.article_key for h in hits]


def test_locale_chain() -> None:
    assert locale_chain(locale="fr-CA", source_locales=["de"]) == ["fr-CA", "fr", "en", "de"]
    assert locale_chain(locale="fr_ca") == ["fr-CA", "fr", "en"]
    assert locale_chain(locale="nonsense!") == ["en"]


def test_hit_shape_and_preferred_locale(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    hits = knowledge_search(tenant=tenant_a, query="Wie lange dauert der Versand?", locale="de", region=None)
    top = hits[0]
    assert (top.article_key, top.locale, top.region) == ("shipping-times", "de", None)
    assert top.heading_path == ["Lieferzeiten"] and top.title == "Lieferzeiten"
    assert top.citation_url == (
        f"/t/tenant-a/knowledge/{demo_kb.pk}/articles/shipping-times/?locale=de"
    ) or top.citation_url.startswith(f"/t/tenant-a/knowledge/{demo_kb.pk}/")
    assert top.score > 0 and len(hits) <= 5
    assert len(set(keys(hits))) == len(hits)  # one hit per article


def test_cross_lingual_falls_back_to_english(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    hits = knowledge_search(tenant=tenant_a, query="Wie lange ist ein Geschenkgutschein gültig?", locale="de")
    found = {h.article_key: h.locale for h in hits[:3]}
    assert found["gift-cards"] == "en"  # only written in English


def test_regional_variant_preferred(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    q = "Welche Zahlungsarten gibt es?"
    eu = knowledge_search(tenant=tenant_a, query=q, locale="de", region="EU", k=3)
    assert (eu[0].article_key, eu[0].locale, eu[0].region) == ("payment-methods", "de", "eu")
    us = knowledge_search(tenant=tenant_a, query=q, locale="de", region="US", k=3)
    # No German US variant: the German generic text beats the English US variant (locale first).
    assert (us[0].article_key, us[0].locale, us[0].region) == ("payment-methods", "de", None)
    en_us = knowledge_search(tenant=tenant_a, query="payment options", locale="en", region="us", k=3)
    assert (en_us[0].locale, en_us[0].region) == ("en", "us")


def test_locale_outside_the_chain_is_not_answered_from(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    hits = knowledge_search(tenant=tenant_a, query="パスワードを忘れました", locale="ja", k=5)
    assert hits[0].locale == "ja"
    assert all(h.locale in ("ja", "en") for h in hits)


def test_tenant_b_never_sees_tenant_a_chunks(
    tenant_a: Tenant, tenant_b: Tenant, demo_kb: KnowledgeBase
) -> None:
    assert knowledge_search(tenant=tenant_a, query="password", locale="en")
    assert knowledge_search(tenant=tenant_b, query="password", locale="en") == []
    with tenant_context(tenant_b):
        assert not Chunk.objects.exists()
        # Even an explicit KB id of tenant A finds nothing for tenant B.
        assert knowledge_search(tenant=tenant_b, query="password", locale="en", kb=str(demo_kb.pk)) == []


def test_empty_query(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    assert knowledge_search(tenant=tenant_a, query="   ", locale="en") == []


def evaluate(tenant: Tenant) -> dict[str, dict[str, float]]:
    """recall@1, recall@3 and MRR per language over the evaluation set."""
    per: dict[str, list[int]] = {}
    for line in EVAL.read_text().splitlines():
        case = json.loads(line)
        hits = knowledge_search(
            tenant=tenant, query=case["question"], locale=case["locale"], region=case["region"], k=10
        )
        found = keys(hits)
        rank = found.index(case["expect"]) + 1 if case["expect"] in found else 0
        per.setdefault(case["locale"], []).append(rank)
        per.setdefault("all", []).append(rank)
    return {
        lang: {
            "n": len(ranks),
            "recall@1": sum(1 for r in ranks if r == 1) / len(ranks),
            "recall@3": sum(1 for r in ranks if 0 < r <= 3) / len(ranks),
            "mrr": sum(1 / r for r in ranks if r) / len(ranks),
        }
        for lang, ranks in per.items()
    }


def test_eval_recall_at_3(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    scores = evaluate(tenant_a)
    print(json.dumps(scores, indent=1))  # noqa: T201 - shown with -s when tuning
    assert scores["all"]["recall@3"] >= RECALL_AT_3_MIN, scores


def test_search_expressions_match_the_indexes(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    """The SQL's expressions are the indexes' (a mismatch silently turns each half into a full scan)."""
    _sql, params = search_statement(
        tenant_id=tenant_a.id,
        query="Wie lange dauert der Versand?",
        vector=get_provider().embed_query("Wie lange dauert der Versand?"),
        chain=locale_chain(locale="de", source_locales=["en"]),
        kb_ids=[str(demo_kb.pk)],
        model_id=demo_kb.embedding_model,
        region="eu",
        k=5,
    )
    alias = tenant_a.home_region.db_alias
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        # The demo table is small enough to scan and sort: leave the planner only the indexes.
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")
        nearest = f"SELECT c.id FROM knowledge_chunk c ORDER BY {DISTANCE_SQL} LIMIT 5"  # noqa: S608 - constants
        cursor.execute("EXPLAIN " + nearest, params)
        assert "Index Scan using chunk_embedding_hnsw_half" in str(cursor.fetchall())
        cursor.execute("SET LOCAL enable_indexscan = off")
        title = "plainto_tsquery('german', 'Lieferzeiten')"
        words = f"{LOCALIZED_TSV_SQL} @@ ({title} && %(locale_terms)s::tsquery)"
        matches = f"SELECT c.locale FROM knowledge_chunk c WHERE {words}"  # noqa: S608 - constants
        cursor.execute("EXPLAIN " + matches, params)
        assert "Bitmap Index Scan on chunk_tsv_locale_gin" in str(cursor.fetchall())
        cursor.execute(matches, params)
        assert {row[0] for row in cursor.fetchall()} == {"de"}  # "Lieferzeiten" is a German title
        cursor.execute(matches, {**params, "locale_terms": "'~en' | '~fr'"})
        assert cursor.fetchall() == []  # the index filters by locale
        # The search functions (apps/knowledge/sql/) use these very expressions.
        cursor.execute(
            "SELECT proname, prosrc FROM pg_proc"
            " WHERE proname IN ('knowledge_search_fts', 'knowledge_search_fuse')"
        )
        body = dict(cursor.fetchall())
    assert DISTANCE_SQL.replace("%(vec)s::halfvec(512)", "p_vec") in body["knowledge_search_fuse"]
    assert f"{LOCALIZED_TSV_SQL} @@ (all_words && p_locale_terms)" in body["knowledge_search_fts"]
    assert f"{LOCALIZED_TSV_SQL} @@ (any_word && p_locale_terms)" in body["knowledge_search_fts"]


def test_embedding_overlapped_with_full_text_finds_what_one_call_finds(
    tenant_a: Tenant, demo_kb: KnowledgeBase
) -> None:
    """The two-call search (full text sent before the question is embedded) answers like the one call."""
    cases = [json.loads(line) for line in EVAL.read_text().splitlines()][::3]
    assert len({case["locale"] for case in cases}) >= 3
    for case in cases:
        args = {"query": case["question"], "locale": case["locale"], "region": case["region"]}
        overlapped = knowledge_search(tenant=tenant_a, **args)
        vector = get_provider().embed_query(case["question"])
        one_call = knowledge_search(tenant=tenant_a, **args, query_vector=vector)
        assert overlapped, case
        assert [(h.chunk_id, h.article_key, h.locale, h.region) for h in overlapped] == [
            (h.chunk_id, h.article_key, h.locale, h.region) for h in one_call
        ]
        assert [h.score for h in overlapped] == pytest.approx([h.score for h in one_call], abs=1e-9)
        assert overlapped[0].relevance == pytest.approx(one_call[0].relevance, abs=1e-6)


def test_words_found_nowhere_leave_the_vector_half(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    """No full-text match at all (empty ranking passed to the second call): the vector half still answers."""
    hits = knowledge_search(tenant=tenant_a, query="zzqx vvkjw", locale="en", k=3)
    assert len(hits) == 3 and all(h.score > 0 for h in hits)


def test_a_failed_embedding_leaves_the_connection_usable(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    """The full-text call is already sent when embedding fails: the error surfaces, the connection goes on."""
    with tenant_context(tenant_a):
        KnowledgeBase.objects.filter(pk=demo_kb.pk).update(embedding_model="retired-model")
    knowledge_version_bump(tenant_id=tenant_a.id)
    with pytest.raises(EmbeddingError, match="retired-model"):
        knowledge_search(tenant=tenant_a, query="Wie lange dauert der Versand?", locale="de")
    with tenant_context(tenant_a):
        KnowledgeBase.objects.filter(pk=demo_kb.pk).update(embedding_model=get_provider().model_id)
    knowledge_version_bump(tenant_id=tenant_a.id)
    hits = knowledge_search(tenant=tenant_a, query="Wie lange dauert der Versand?", locale="de")
    assert (hits[0].article_key, hits[0].locale) == ("shipping-times", "de")


def test_knowledge_base_list_is_cached_until_the_knowledge_version_changes(
    tenant_a: Tenant, tenant_b: Tenant, demo_kb: KnowledgeBase
) -> None:
    assert search_kbs(tenant=tenant_a) == [(str(demo_kb.pk), "en", demo_kb.embedding_model)]
    assert search_kbs(tenant=tenant_b) == []
    with tenant_context(tenant_a):
        # Changed behind the services' back: the cached list is served until the version moves.
        KnowledgeBase.objects.filter(pk=demo_kb.pk).update(source_locale="de")
        assert search_kbs(tenant=tenant_a)[0][1] == "en"
        other = kb_create(tenant=tenant_a, name="Second", source_locale="fr")  # bumps the version
    listed = {row[0]: row for row in search_kbs(tenant=tenant_a)}
    assert listed == {
        str(demo_kb.pk): (str(demo_kb.pk), "de", demo_kb.embedding_model),
        str(other.pk): (str(other.pk), "fr", other.embedding_model),
    }
    assert search_kbs(tenant=tenant_b) == []


def test_search_with_a_malformed_or_foreign_kb_id(
    tenant_a: Tenant, tenant_b: Tenant, demo_kb: KnowledgeBase
) -> None:
    assert knowledge_search(tenant=tenant_a, query="password", locale="en", kb="not-a-uuid") == []
    assert knowledge_search(tenant=tenant_a, query="password", locale="en", kb=demo_kb)
    assert knowledge_search(tenant=tenant_b, query="password", locale="en", kb=demo_kb) == []


def test_a_malformed_fallback_locale_setting_does_not_break_full_text(
    tenant_a: Tenant, demo_kb: KnowledgeBase, settings: Any
) -> None:
    settings.HUB_KNOWLEDGE_FALLBACK_LOCALE = "e'n\\"  # quoted into the full-text query: must stay a term
    hits = knowledge_search(tenant=tenant_a, query="Wie lange dauert der Versand?", locale="de")
    assert (hits[0].article_key, hits[0].locale) == ("shipping-times", "de")


def test_search_statements_are_logged_like_orm_queries(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    """Prepared on the Django connection: in its transaction (the demo base is not committed) and its log."""
    alias = tenant_a.home_region.db_alias
    question = "Wie lange dauert der Versand?"
    with CaptureQueriesContext(connections[alias]) as overlapped:
        hits = knowledge_search(tenant=tenant_a, query=question, locale="de")
    assert hits[0].article_key == "shipping-times"
    called = [
        ("knowledge_search_fts(" in q["sql"], "knowledge_search_fuse(" in q["sql"])
        for q in overlapped.captured_queries
        if "knowledge_search_" in q["sql"]  # not the knowledge base list, loaded once per knowledge version
    ]
    assert called == [(True, False), (False, True)]  # full text first, sent before the embedding
    vector = get_provider().embed_query(question)
    with CaptureQueriesContext(connections[alias]) as one_call:
        knowledge_search(tenant=tenant_a, query=question, locale="de", query_vector=vector)
    assert [q["sql"] for q in one_call.captured_queries if "knowledge_search_" in q["sql"]] == [
        selectors._SEARCH_SQL
    ]
    assert selectors._SEARCH_SQL.startswith("SELECT * FROM knowledge_search_chunks(")


def _fts_ids(tenant: Tenant, kb: KnowledgeBase, query: str, *, common: list[str]) -> list[int]:
    params = search_params(
        tenant_id=tenant.id,
        query=query,
        chain=locale_chain(locale="en"),
        kb_ids=[str(kb.pk)],
        model_id=kb.embedding_model,
        region="",
        k=5,
    )
    with connections[tenant.home_region.db_alias].cursor() as cursor:
        cursor.execute(selectors._FTS_SQL, {**params, "common_words": common})
        return json.loads(cursor.fetchone()[0].replace("{", "[").replace("}", "]"))


def test_words_in_most_chunks_are_left_out_of_the_full_text_half(
    tenant_a: Tenant, demo_kb: KnowledgeBase
) -> None:
    """A word most chunks contain is skipped like a stop word (its GIN list is the costly part, it ranks
    nothing) once the table is large; other words still match; a question without words matches nothing."""
    alias = tenant_a.home_region.db_alias
    with connections[alias].cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")  # the common words come from ANALYZE's statistics
        cursor.execute(
            "SELECT m.lexeme, m.share FROM pg_stats s,"
            " unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS m(lexeme, share)"
            " WHERE s.tablename = 'knowledge_chunk' AND s.attname = 'tsv' AND m.lexeme IS NOT NULL"
            " ORDER BY m.share DESC LIMIT 1"
        )
        word, share = cursor.fetchone()
    assert share > 0.04, (word, share)  # (phrasing and title chunks are many and short: shares are lower)
    # As if the table were large (no minimum count) and the share a little under this word's: it is common.
    common = selectors.common_words(alias=alias, share=share * 0.9, chunks=0)
    assert word in common
    assert _fts_ids(tenant_a, demo_kb, word, common=[])  # counted: the word matches chunks
    assert _fts_ids(tenant_a, demo_kb, word, common=common) == []
    assert _fts_ids(tenant_a, demo_kb, f"{word} password", common=common)
    # The demo's few dozen chunks are far below FTS_COMMON_CHUNKS: a small base keeps all its words.
    assert word not in selectors.common_words(alias=alias)
    # Only stop words: no match at all (not every chunk of the locales, as an empty word query did).
    assert _fts_ids(tenant_a, demo_kb, "how do I", common=[]) == []
    hits = knowledge_search(tenant=tenant_a, query="how do I", locale="en", k=3)
    assert len(hits) == 3  # the vector half answers alone


def test_citation_urls_are_the_article_pages(tenant_a: Tenant, demo_kb: KnowledgeBase) -> None:
    hits = knowledge_search(tenant=tenant_a, query="Welche Zahlungsarten gibt es?", locale="de", region="EU")
    assert hits and any(h.region for h in hits)
    for hit in hits:
        page = reverse(
            "knowledge:article",
            kwargs={"tenant_slug": "tenant-a", "kb_id": str(demo_kb.pk), "key": hit.article_key},
        )
        query = f"?locale={hit.locale}" + (f"&region={hit.region}" if hit.region else "")
        assert hit.citation_url == page + query
