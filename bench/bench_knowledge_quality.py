"""Answer quality per language: recall@1, recall@3 and MRR of `knowledge_search` on the evaluation set.

Indexes the demo help center (apps/knowledge/demo_data, en/de/fr/es/ja with EU/US variants) with the
configured embedding model in a throwaway tenant, then asks every question of
tests/knowledge/eval/questions.jsonl in its own locale and region. Two baselines run in the same pass over
the same chunks, filters (tenant, status, locale chain, region) and k, to show what the fusion buys:

- vector only: exact cosine distance of the question's embedding, best chunk per article;
- full text only: `ts_rank_cd` over the chunks' tsvector, the question stemmed in each language of the chain.

A question scores rank r when its expected article is the r-th article returned (0 when not in the top k).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "tests" / "knowledge" / "eval" / "questions.jsonl"
K = 10

_FILTERS = (
    "c.tenant_id = %(tenant)s AND c.kb_id = %(kb)s AND c.model_id = %(model)s AND c.status = 'published'"
    " AND c.locale = ANY(%(chain)s::varchar[]) AND (c.region = '' OR c.region = %(region)s)"
)
_VECTOR_SQL = f"""
SELECT c.article_key, min(c.embedding <=> %(vec)s::vector) AS d
FROM knowledge_chunk c WHERE {_FILTERS}
GROUP BY c.article_key ORDER BY d, c.article_key LIMIT %(k)s
"""  # noqa: S608 - constant SQL, values are parameters


def _fulltext_sql(configs: tuple[str, ...]) -> str:
    query = " || ".join(
        f"replace(plainto_tsquery('{cfg}'::regconfig, %(q)s)::text, '&', '|')::tsquery" for cfg in configs
    )
    return f"""
SELECT c.article_key, max(ts_rank_cd(c.tsv, {query})) AS rank
FROM knowledge_chunk c WHERE c.tsv @@ ({query}) AND {_FILTERS}
GROUP BY c.article_key ORDER BY rank DESC, c.article_key LIMIT %(k)s
"""  # noqa: S608 - configs come from our own table of text search configurations


def _scores(ranks: list[int]) -> dict[str, float]:
    return {
        "n": len(ranks),
        "recall@1": round(sum(1 for r in ranks if r == 1) / len(ranks), 3),
        "recall@3": round(sum(1 for r in ranks if 0 < r <= 3) / len(ranks), 3),
        "mrr": round(sum(1 / r for r in ranks if r) / len(ranks), 3),
    }


def _report(ranks: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Scores per question language, then "all"."""
    out = {lang: _scores(r) for lang, r in sorted(ranks.items()) if lang != "all"}
    out["all"] = _scores(ranks["all"])
    return out


def evaluate(*, tenant: Any, kb: Any, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Run every case through knowledge_search and both baselines; ranks, scores and misses per method."""
    from django.db import connections

    from apps.knowledge.chunking import fts_text, ts_config
    from apps.knowledge.embeddings import provider_for_model
    from apps.knowledge.selectors import knowledge_search, locale_chain, normalize_region

    provider = provider_for_model(kb.embedding_model)
    cursor = connections[tenant.home_region.db_alias].cursor()

    def baseline(sql_for: Callable[[list[str]], str], case: dict[str, Any]) -> list[str]:
        chain = locale_chain(locale=case["locale"], source_locales=[kb.source_locale])
        vector = provider.embed_query(case["question"])
        params = {
            "tenant": tenant.id,
            "kb": str(kb.pk),
            "model": kb.embedding_model,
            "chain": chain,
            "region": normalize_region(case["region"]),
            "vec": "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]",
            "q": fts_text(case["question"]),
            "k": K,
        }
        cursor.execute(sql_for(chain), params)
        return [row[0] for row in cursor.fetchall()]

    methods: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        "hybrid": lambda case: [
            hit.article_key
            for hit in knowledge_search(
                tenant=tenant, query=case["question"], locale=case["locale"], region=case["region"], k=K
            )
        ],
        "vector_only": lambda case: baseline(lambda chain: _VECTOR_SQL, case),
        "fulltext_only": lambda case: baseline(
            lambda chain: _fulltext_sql(tuple(dict.fromkeys(ts_config(loc) for loc in chain))), case
        ),
    }
    result: dict[str, Any] = {}
    for name, search in methods.items():
        search(cases[0])  # warm up: model load, connection, plan cache
        ranks: dict[str, list[int]] = {"all": []}
        misses = []
        started = time.perf_counter()
        for case in cases:
            found = search(case)
            rank = found.index(case["expect"]) + 1 if case["expect"] in found else 0
            ranks.setdefault(case["locale"], []).append(rank)
            ranks["all"].append(rank)
            if rank != 1:
                misses.append({"question": case["question"], "expect": case["expect"], "got": found[:3]})
        elapsed_ms = (time.perf_counter() - started) * 1000
        result[name] = {
            "scores": _report(ranks),
            "mean_ms": round(elapsed_ms / len(cases), 2),
            "not_first": misses,
        }
    cursor.close()
    return result


def run() -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.core.context import tenant_context
    from apps.knowledge.demo import DEMO_FILE
    from apps.knowledge.models import Chunk, KnowledgeBase
    from apps.knowledge.services import kb_create, kb_import
    from apps.tenants.models import Region
    from apps.tenants.services import region_sync, tenant_create

    region_sync()
    cases = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    tenant = tenant_create(
        slug=f"bench-kbq-{uuid.uuid4().hex[:8]}",
        name="Bench knowledge quality",
        home_region=Region.objects.get(code="eu"),
    )
    try:
        with tenant_context(tenant):
            kb = kb_create(
                tenant=tenant,
                name="Help center",
                source_locale="en",
                enabled_locales=["de", "fr", "es", "ja"],
                regions=["EU", "US"],
            )
            started = time.perf_counter()
            kb_import(kb=kb, lines=DEMO_FILE.read_text(encoding="utf-8").splitlines(), index_now=True)
            index_s = round(time.perf_counter() - started, 2)
            result: dict[str, Any] = {
                "questions": len(cases),
                "languages": sorted({c["locale"] for c in cases}),
                "k": K,
                "embedding_model": kb.embedding_model,
                "chunks": Chunk.objects.filter(kb=kb).count(),
                "index_s": index_s,
            }
            methods = evaluate(tenant=tenant, kb=kb, cases=cases)
        result["per_language"] = {name: m["scores"] for name, m in methods.items()}
        result["overall"] = {name: m["scores"]["all"] for name, m in methods.items()}
        result["mean_ms"] = {name: m["mean_ms"] for name, m in methods.items()}
        result["hybrid_not_first"] = methods["hybrid"]["not_first"]
    finally:
        with tenant_context(tenant):
            KnowledgeBase.objects.all().delete()
        tenant.is_active = False
        tenant.save(update_fields=["is_active"])
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
