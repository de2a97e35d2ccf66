"""Search: an exact vector scan when the searched knowledge bases hold few chunks.

The shared HNSW index holds every tenant's chunks of the region; the tenant, knowledge base and locale
filters apply after the index scan, so a small tenant next to a large one waded through the large one's
neighbours (iterative scan) and still lost some of its own (recall@1 0.881 alone → 0.833 next to 100,000
chunks, ~55 ms a search). With `p_exact` the vector half orders the tenant's filtered chunks by their
distance plus zero, an expression the HNSW index cannot serve, so they are read through a btree index
(knowledge base, or tenant and knowledge base) and ranked exactly. The selector decides from the cached chunk
count (selectors.EXACT_SCAN_MAX_CHUNKS). The rest of the fusion is 0008's, unchanged.
"""

import importlib

from django.db import migrations

_HNSW_ORDER = "ORDER BY ((c.embedding::halfvec(512)) <=> p_vec)\n            LIMIT p_n"
# "+ 0": the same distance, but not the indexed operator expression, so the planner cannot use HNSW.
_EXACT_ORDER = "ORDER BY ((c.embedding::halfvec(512)) <=> p_vec) + 0, c.id\n            LIMIT p_n"


def _fuse_0008() -> str:
    source = importlib.import_module("apps.knowledge.migrations.0008_search_best_chunk_lazy_distance").FORWARD
    return source[
        source.index("CREATE OR REPLACE FUNCTION knowledge_search_fuse(") : source.index("$fn$;") + 5
    ]


def _fuse_exact() -> str:
    """0008's fuse function with `p_exact`: the same query twice, but for the order of the vector half."""
    fuse = _fuse_0008().replace("CREATE OR REPLACE FUNCTION", "CREATE FUNCTION", 1)
    fuse = fuse.replace(
        "    p_fts_w double precision\n)", "    p_fts_w double precision,\n    p_exact boolean\n)", 1
    )
    fuse = fuse.replace(
        "SET max_parallel_workers_per_gather = 0\n",
        "SET max_parallel_workers_per_gather = 0\nSET enable_seqscan = on\n",
        1,
    )
    # The plan is generic (planned once per connection): with few tenants in a region, the estimate of
    # "tenant_id = $1" is a large share of the table and the planner would scan all of it. A small tenant's
    # rows come from the knowledge base's btree index instead (restored when the function returns).
    start = fuse.index("    RETURN QUERY\n")
    end = fuse.index("END\n$fn$;")
    query = fuse[start:end]
    assert query.count(_HNSW_ORDER) == 1, "0008's vector order moved"
    body = (
        "    IF p_exact THEN\n"
        "    PERFORM set_config('enable_seqscan', 'off', true);\n"
        + query.replace(_HNSW_ORDER, _EXACT_ORDER)
        + "    ELSE\n"
        + query
        + "    END IF;\n"
    )
    return fuse[:start] + body + fuse[end:]


def _chunks(*, exact: bool) -> str:
    """0010's one-call function, passing `p_exact` on to the fuse function when `exact`."""
    source = importlib.import_module("apps.knowledge.migrations.0010_search_common_words_argument").FORWARD
    text = source[
        source.index("CREATE FUNCTION knowledge_search_chunks(") : source.index(
            "$fn$;", source.index("CREATE FUNCTION knowledge_search_chunks(")
        )
        + 5
    ]
    if exact:
        text = text.replace(
            "    p_common_words text[]\n)", "    p_common_words text[],\n    p_exact boolean\n)", 1
        )
        text = text.replace(
            "p_n, p_k, p_ef, p_rrf_k, p_fts_w\n", "p_n, p_k, p_ef, p_rrf_k, p_fts_w, p_exact\n", 1
        )
        assert "p_exact\n" in text, "0010's call of the fuse function moved"
    return text


_DROP_OLD = """
DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision, text[]
);
DROP FUNCTION knowledge_search_fuse(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, bigint[], uuid[], varchar[],
    integer, integer, integer, double precision, double precision
);
"""
_DROP_NEW = """
DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision, text[], boolean
);
DROP FUNCTION knowledge_search_fuse(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, bigint[], uuid[], varchar[],
    integer, integer, integer, double precision, double precision, boolean
);
"""
FORWARD = _DROP_OLD + _fuse_exact() + "\n" + _chunks(exact=True)
BACKWARD = _DROP_NEW + _fuse_0008().replace("CREATE OR REPLACE", "CREATE", 1) + "\n" + _chunks(exact=False)


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0010_search_common_words_argument"),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD, hints={"silo": "region"}),
    ]
