"""Where an exact vector scan stops being cheaper than the shared HNSW index (EXACT_SCAN_MAX_CHUNKS).

Runs the vector half of knowledge_search_fuse both ways on the bench tenant of bench_knowledge (100,000
chunks, BENCH_KB_TENANT), with a small tenant of N chunks simulated by the first N chunk ids: exact (the
distance + 0 over the filtered rows, read through a btree index) and HNSW with the filter after the index
scan (iterative scan, relaxed order, ef_search 60), as a tenant of N chunks next to the rest searches.
Prints ms per search (median, p90) and the recall of the HNSW top candidates against the exact ones.

    BENCH_KB_TENANT=kbperf python bench/bench_knowledge_exact.py   # env: REGION_EU_DATABASE_URL
"""

from __future__ import annotations

import json
import os
import statistics
import time

import psycopg

SIZES = [int(x) for x in os.environ.get("BENCH_EXACT_SIZES", "1000,2000,5000,10000,20000").split(",")]
QUERIES = int(os.environ.get("BENCH_EXACT_QUERIES", "40"))
N = 40  # candidates per half (HUB_KNOWLEDGE_CANDIDATES)

_VEC = """
SELECT c.id FROM knowledge_chunk c
WHERE c.tenant_id = %(tenant)s AND {ids} <= %(size)s AND c.model_id = %(model)s AND c.status = 'published'
ORDER BY ((c.embedding::halfvec(512)) <=> %(vec)s::halfvec(512)){plus}
LIMIT %(n)s
"""


def _time(cur: psycopg.Cursor, sql: str, params: dict[str, object]) -> tuple[float, list[int]]:
    started = time.perf_counter()
    cur.execute(sql, params, prepare=True)
    ids = [row[0] for row in cur.fetchall()]
    return (time.perf_counter() - started) * 1000, ids


def run() -> dict[str, object]:
    url = os.environ["REGION_EU_DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 60")
        cur.execute("SET max_parallel_workers_per_gather = 0; SET plan_cache_mode = force_generic_plan")
        cur.execute("SELECT tenant_id, model_id, count(*) FROM knowledge_chunk GROUP BY 1, 2 ORDER BY 3 DESC")
        tenant, model, total = cur.fetchone()  # type: ignore[misc]
        # Questions: chunk vectors from the far end of the table, outside every simulated tenant.
        cur.execute(
            "SELECT embedding::halfvec(512)::text FROM knowledge_chunk WHERE tenant_id = %s"
            " ORDER BY id DESC LIMIT %s",
            (tenant, QUERIES),
        )
        vectors = [row[0] for row in cur.fetchall()]
        out: dict[str, object] = {"total_chunks": total, "queries": len(vectors)}
        for size in SIZES:
            row: dict[str, float] = {}
            found: dict[str, list[list[int]]] = {}
            # The HNSW variant filters on "c.id + 0": no btree range scan for the planner to prefer, as for a
            # real tenant whose rows the HNSW index must filter.
            for name, plus, ids in (("exact", " + 0, c.id", "c.id"), ("hnsw", "", "c.id + 0")):
                sql = _VEC.format(plus=plus, ids=ids)
                times = []
                found[name] = []
                for i, vec in enumerate(vectors):
                    params = {"tenant": tenant, "size": size, "model": model, "vec": vec, "n": N}
                    if i == 0:
                        _time(cur, sql, params)  # warm: plan, pages
                    ms, hit_ids = _time(cur, sql, params)
                    times.append(ms)
                    found[name].append(hit_ids)
                times.sort()
                row[f"{name}_p50_ms"] = round(statistics.median(times), 2)
                row[f"{name}_p90_ms"] = round(times[int(0.9 * (len(times) - 1))], 2)
            row["hnsw_recall@40"] = round(
                statistics.mean(
                    len(set(h) & set(e)) / N for h, e in zip(found["hnsw"], found["exact"], strict=True)
                ),
                3,
            )
            out[str(size)] = row
        return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
