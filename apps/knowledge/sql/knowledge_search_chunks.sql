-- The whole hybrid search in one call: knowledge_search_fts, then knowledge_search_fuse with its ranking,
-- with the arguments of both and the answers of the second. For a caller that already has the question's
-- vector (the chat), it saves the round trip between the two calls.
CREATE OR REPLACE FUNCTION knowledge_search_chunks(
    p_tenant bigint,
    p_kbs uuid[],
    p_model varchar,
    p_chain varchar[],
    p_region varchar,
    p_vec halfvec,
    p_configs regconfig[],
    p_query text,
    p_locale_terms tsquery,
    p_n integer,
    p_k integer,
    p_ef integer,
    p_fts_cap integer,
    p_rrf_k double precision,
    p_fts_w double precision,
    p_common_words text[],
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
LANGUAGE sql
AS $fn$
    SELECT s.* FROM knowledge_search_fts(
        p_tenant, p_kbs, p_model, p_chain, p_region, p_configs, p_query, p_locale_terms, p_n, p_fts_cap,
        p_common_words
    ) f
    CROSS JOIN LATERAL knowledge_search_fuse(
        p_tenant, p_kbs, p_model, p_chain, p_region, p_vec, f.fts_ids, f.fts_kb_ids, f.fts_article_keys,
        p_n, p_k, p_ef, p_rrf_k, p_fts_w, p_exact, p_m
    ) s
$fn$;
