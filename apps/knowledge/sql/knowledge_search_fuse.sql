-- The vector half of the hybrid search and the fusion (apps/knowledge/selectors.py, knowledge_search): the
-- `p_n` chunks nearest to the question, reciprocal-rank fusion with the full-text ranking of
-- knowledge_search_fts (passed back as arrays, best first), the `p_m` best articles as candidates for the
-- rerank (with its features: the best similarity of the article's text, of its title and phrasings (in the
-- searched languages, and in any), of any of its chunks, and its best full-text rank), and the best text chunk of each in the preferred locale and
-- region. `p_k` is not used here any more (the rerank keeps k); it stays an argument of the wrapper.
--
-- The vector half reads the half-precision HNSW index (chunk_embedding_hnsw_half): its ORDER BY must be the
-- index's expression (selectors.DISTANCE_SQL). With `p_exact` (few chunks in the searched knowledge bases,
-- selectors.EXACT_SCAN_MAX_CHUNKS) it orders by the distance plus zero, which the index cannot serve: the
-- tenant's filtered chunks are read through a btree index and ranked exactly, so the region's other tenants
-- in the shared index neither slow the search nor crowd out its own neighbours. The two branches are the same
-- query but for that order. The exact branch turns sequential scans off for the call: the generic plan,
-- estimating "tenant_id = $1" in a region of few tenants as a large share of the table, would scan all of it.
--
-- The best chunk of a text is the one with the highest fused score; the distance decides only when none of
-- the text's chunks was a candidate (the article was found in another locale), to compute few distances.
-- Vectors are stored in the row (migration 0013 raised the table's toast_tuple_target): out of line, each
-- one read was a TOAST fetch (~8 us; the exact scan of 1,180 chunks took 10.5 ms, inline 3.0 ms).
--
-- Settings given as attributes apply to this call only and are restored when it returns, including what
-- set_config changes inside (hnsw.ef_search from `p_ef`, enable_seqscan). A forced generic plan and no
-- parallel workers, as in knowledge_search_fts.

-- pgvector defines its settings (hnsw.*) when its library loads; before that, only a superuser may name them
-- in a function. A vector value loads it: a session that has not used pgvector yet can apply this file.
SELECT '[0]'::vector;

CREATE OR REPLACE FUNCTION knowledge_search_fuse(
    p_tenant bigint,
    p_kbs uuid[],
    p_model varchar,
    p_chain varchar[],
    p_region varchar,
    p_vec halfvec,
    p_fts_ids bigint[],
    p_fts_kb_ids uuid[],
    p_fts_article_keys varchar[],
    p_n integer,
    p_k integer,
    p_ef integer,
    p_rrf_k double precision,
    p_fts_w double precision,
    p_exact boolean,
    p_m integer
)
RETURNS TABLE (
    hit_id bigint,
    hit_kb_id uuid,
    hit_article_key varchar,
    hit_locale varchar,
    hit_region varchar,
    hit_title varchar,
    hit_heading_path varchar[],
    hit_text text,
    hit_score double precision,
    hit_relevance double precision,
    hit_content_sim double precision,
    hit_key_sim double precision,
    hit_any_sim double precision,
    hit_fts_rank bigint,
    hit_key_any_sim double precision
)
LANGUAGE plpgsql
SET hnsw.ef_search = 40
SET hnsw.iterative_scan = relaxed_order
SET plan_cache_mode = force_generic_plan
SET max_parallel_workers_per_gather = 0
SET enable_seqscan = on
AS $fn$
BEGIN
    PERFORM set_config('hnsw.ef_search', p_ef::text, true);
    IF p_exact THEN
    PERFORM set_config('enable_seqscan', 'off', true);
    RETURN QUERY
    WITH vec AS MATERIALIZED (
        SELECT h.id, h.kb_id, h.article_key, row_number() OVER () AS r
        FROM (
            SELECT c.id, c.kb_id, c.article_key FROM knowledge_chunk c
            WHERE c.tenant_id = p_tenant AND c.kb_id = ANY(p_kbs) AND c.model_id = p_model
              AND c.status = 'published' AND c.locale = ANY(p_chain)
              AND (c.region = '' OR c.region = p_region)
            ORDER BY ((c.embedding::halfvec(512)) <=> p_vec) + 0, c.id
            LIMIT p_n
        ) h
    ),
    fts AS (
        SELECT f.id, f.kb_id, f.article_key, f.r
        FROM unnest(p_fts_ids, p_fts_kb_ids, p_fts_article_keys)
             WITH ORDINALITY AS f(id, kb_id, article_key, r)
    ),
    cand AS (
        SELECT u.id, u.kb_id, u.article_key, sum(u.w / (p_rrf_k + u.r)) AS score
        FROM (
            SELECT v.id, v.kb_id, v.article_key, v.r, 1.0::double precision AS w FROM vec v
            UNION ALL
            SELECT f.id, f.kb_id, f.article_key, f.r, p_fts_w AS w FROM fts f
        ) u
        GROUP BY u.id, u.kb_id, u.article_key
    ),
    arts AS (
        SELECT cd.kb_id, cd.article_key, max(cd.score) AS score
        FROM cand cd GROUP BY cd.kb_id, cd.article_key
        ORDER BY max(cd.score) DESC, cd.article_key
        LIMIT p_m
    ),
    sims AS (
        -- The candidates' chunks in the region with their similarity: the rerank's features
        -- (selectors.rerank_features) compare the text, its title and phrasings, also in the article's other
        -- languages, with the question.
        SELECT c.kb_id, c.article_key, c.kind, c.locale, c.locale = ANY(p_chain) AS in_chain,
               1 - ((c.embedding::halfvec(512)) <=> p_vec) AS sim
        FROM arts a
        JOIN knowledge_chunk c
          ON c.tenant_id = p_tenant AND c.kb_id = a.kb_id AND c.article_key = a.article_key
        WHERE c.model_id = p_model AND c.status = 'published' AND (c.region = '' OR c.region = p_region)
          -- Other languages' titles and phrasings count, not their text, which added little (evaluation set,
          -- tune split) for many more distances.
          AND (c.locale = ANY(p_chain) OR c.kind <> 'content')
    ),
    feats AS (
        SELECT s.kb_id, s.article_key,
               max(s.sim) FILTER (WHERE s.in_chain AND s.kind = 'content') AS content_sim,
               max(s.sim) FILTER (WHERE s.in_chain AND s.kind <> 'content') AS key_sim,
               max(s.sim) AS any_sim,
               max(s.sim) FILTER (WHERE s.kind <> 'content') AS key_any_sim
        FROM sims s GROUP BY s.kb_id, s.article_key
    ),

    ftsr AS (
        SELECT f.kb_id, f.article_key, min(f.r) AS r FROM fts f GROUP BY f.kb_id, f.article_key
    ),
    pref AS (
        SELECT DISTINCT ON (c.kb_id, c.article_key) c.kb_id, c.article_key, c.translation_id
        FROM arts a
        JOIN knowledge_chunk c
          ON c.tenant_id = p_tenant AND c.kb_id = a.kb_id AND c.article_key = a.article_key
        WHERE c.tenant_id = p_tenant AND c.kb_id = ANY(p_kbs) AND c.model_id = p_model
          AND c.status = 'published' AND c.locale = ANY(p_chain)
          AND (c.region = '' OR c.region = p_region)
        ORDER BY c.kb_id, c.article_key, array_position(p_chain, c.locale::varchar), c.region = ''
    ),
    best AS (
        -- The best chunk of each preferred text: the highest fused score, or the closest to the question
        -- when none of its chunks was a candidate (the article was found in another locale). The distance
        -- is computed only where it can decide.
        SELECT DISTINCT ON (x.translation_id)
               x.id, x.kb_id, x.article_key, x.locale, x.region, x.title, x.heading_path, x.text
        FROM (
            SELECT c.id, c.kb_id, c.article_key, c.locale, c.region, c.title, c.heading_path, c.text,
                   c.translation_id, c.embedding, f.score,
                   count(f.score) OVER (PARTITION BY c.translation_id) AS scored
            FROM pref p
            JOIN knowledge_chunk c ON c.translation_id = p.translation_id AND c.model_id = p_model
                 AND c.kind = 'content'
            LEFT JOIN cand f ON f.id = c.id
        ) x
        ORDER BY x.translation_id, x.score DESC NULLS LAST,
                 CASE WHEN x.score IS NOT NULL OR x.scored = 0
                      THEN ((x.embedding::halfvec(512)) <=> p_vec) END
    )
    SELECT b.id::bigint, b.kb_id, b.article_key::varchar, b.locale::varchar, b.region::varchar,
           b.title::varchar, b.heading_path::varchar[], b.text, a.score::double precision,
           (SELECT 1 - ((c.embedding::halfvec(512)) <=> p_vec)
            FROM knowledge_chunk c JOIN vec v ON v.id = c.id WHERE v.r = 1)::double precision,
           ft.content_sim::double precision, ft.key_sim::double precision, ft.any_sim::double precision,
           fr.r::bigint, ft.key_any_sim::double precision
    FROM best b JOIN arts a ON a.kb_id = b.kb_id AND a.article_key = b.article_key
    LEFT JOIN feats ft ON ft.kb_id = b.kb_id AND ft.article_key = b.article_key
    LEFT JOIN ftsr fr ON fr.kb_id = b.kb_id AND fr.article_key = b.article_key
    ORDER BY a.score DESC, b.article_key;
    ELSE
    RETURN QUERY
    WITH vec AS MATERIALIZED (
        SELECT h.id, h.kb_id, h.article_key, row_number() OVER () AS r
        FROM (
            SELECT c.id, c.kb_id, c.article_key FROM knowledge_chunk c
            WHERE c.tenant_id = p_tenant AND c.kb_id = ANY(p_kbs) AND c.model_id = p_model
              AND c.status = 'published' AND c.locale = ANY(p_chain)
              AND (c.region = '' OR c.region = p_region)
            ORDER BY ((c.embedding::halfvec(512)) <=> p_vec)
            LIMIT p_n
        ) h
    ),
    fts AS (
        SELECT f.id, f.kb_id, f.article_key, f.r
        FROM unnest(p_fts_ids, p_fts_kb_ids, p_fts_article_keys)
             WITH ORDINALITY AS f(id, kb_id, article_key, r)
    ),
    cand AS (
        SELECT u.id, u.kb_id, u.article_key, sum(u.w / (p_rrf_k + u.r)) AS score
        FROM (
            SELECT v.id, v.kb_id, v.article_key, v.r, 1.0::double precision AS w FROM vec v
            UNION ALL
            SELECT f.id, f.kb_id, f.article_key, f.r, p_fts_w AS w FROM fts f
        ) u
        GROUP BY u.id, u.kb_id, u.article_key
    ),
    arts AS (
        SELECT cd.kb_id, cd.article_key, max(cd.score) AS score
        FROM cand cd GROUP BY cd.kb_id, cd.article_key
        ORDER BY max(cd.score) DESC, cd.article_key
        LIMIT p_m
    ),
    sims AS (
        -- The candidates' chunks in the region with their similarity: the rerank's features
        -- (selectors.rerank_features) compare the text, its title and phrasings, also in the article's other
        -- languages, with the question.
        SELECT c.kb_id, c.article_key, c.kind, c.locale, c.locale = ANY(p_chain) AS in_chain,
               1 - ((c.embedding::halfvec(512)) <=> p_vec) AS sim
        FROM arts a
        JOIN knowledge_chunk c
          ON c.tenant_id = p_tenant AND c.kb_id = a.kb_id AND c.article_key = a.article_key
        WHERE c.model_id = p_model AND c.status = 'published' AND (c.region = '' OR c.region = p_region)
          -- Other languages' titles and phrasings count, not their text, which added little (evaluation set,
          -- tune split) for many more distances.
          AND (c.locale = ANY(p_chain) OR c.kind <> 'content')
    ),
    feats AS (
        SELECT s.kb_id, s.article_key,
               max(s.sim) FILTER (WHERE s.in_chain AND s.kind = 'content') AS content_sim,
               max(s.sim) FILTER (WHERE s.in_chain AND s.kind <> 'content') AS key_sim,
               max(s.sim) AS any_sim,
               max(s.sim) FILTER (WHERE s.kind <> 'content') AS key_any_sim
        FROM sims s GROUP BY s.kb_id, s.article_key
    ),

    ftsr AS (
        SELECT f.kb_id, f.article_key, min(f.r) AS r FROM fts f GROUP BY f.kb_id, f.article_key
    ),
    pref AS (
        SELECT DISTINCT ON (c.kb_id, c.article_key) c.kb_id, c.article_key, c.translation_id
        FROM arts a
        JOIN knowledge_chunk c
          ON c.tenant_id = p_tenant AND c.kb_id = a.kb_id AND c.article_key = a.article_key
        WHERE c.tenant_id = p_tenant AND c.kb_id = ANY(p_kbs) AND c.model_id = p_model
          AND c.status = 'published' AND c.locale = ANY(p_chain)
          AND (c.region = '' OR c.region = p_region)
        ORDER BY c.kb_id, c.article_key, array_position(p_chain, c.locale::varchar), c.region = ''
    ),
    best AS (
        -- The best chunk of each preferred text: the highest fused score, or the closest to the question
        -- when none of its chunks was a candidate (the article was found in another locale). The distance
        -- is computed only where it can decide.
        SELECT DISTINCT ON (x.translation_id)
               x.id, x.kb_id, x.article_key, x.locale, x.region, x.title, x.heading_path, x.text
        FROM (
            SELECT c.id, c.kb_id, c.article_key, c.locale, c.region, c.title, c.heading_path, c.text,
                   c.translation_id, c.embedding, f.score,
                   count(f.score) OVER (PARTITION BY c.translation_id) AS scored
            FROM pref p
            JOIN knowledge_chunk c ON c.translation_id = p.translation_id AND c.model_id = p_model
                 AND c.kind = 'content'
            LEFT JOIN cand f ON f.id = c.id
        ) x
        ORDER BY x.translation_id, x.score DESC NULLS LAST,
                 CASE WHEN x.score IS NOT NULL OR x.scored = 0
                      THEN ((x.embedding::halfvec(512)) <=> p_vec) END
    )
    SELECT b.id::bigint, b.kb_id, b.article_key::varchar, b.locale::varchar, b.region::varchar,
           b.title::varchar, b.heading_path::varchar[], b.text, a.score::double precision,
           (SELECT 1 - ((c.embedding::halfvec(512)) <=> p_vec)
            FROM knowledge_chunk c JOIN vec v ON v.id = c.id WHERE v.r = 1)::double precision,
           ft.content_sim::double precision, ft.key_sim::double precision, ft.any_sim::double precision,
           fr.r::bigint, ft.key_any_sim::double precision
    FROM best b JOIN arts a ON a.kb_id = b.kb_id AND a.article_key = b.article_key
    LEFT JOIN feats ft ON ft.kb_id = b.kb_id AND ft.article_key = b.article_key
    LEFT JOIN ftsr fr ON fr.kb_id = b.kb_id AND fr.article_key = b.article_key
    ORDER BY a.score DESC, b.article_key;
    END IF;
END
$fn$;
