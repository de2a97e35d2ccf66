"""Search in two calls, so the full-text half runs while the question is embedded.

`knowledge_search_fts` ranks the full-text matches and answers them as three arrays (ids, knowledge bases,
article keys, best first). `knowledge_search_fuse` runs the HNSW half, fuses both rankings and picks each
article's best chunk, taking the full-text ranking as arguments. knowledge_search sends the first call
without waiting (psycopg pipeline mode), embeds the question while PostgreSQL works on the other core, then
sends the second: the full-text half and its round trip disappear behind the embedding.

`knowledge_search_chunks` (0006) stays, with the same signature and answers, as the two calls in one: a
caller that already has the vector (the chat) saves the round trip between them.

The bodies are 0006's, unchanged (see the comments in apps/knowledge/selectors.py); the settings too: a
forced generic plan, no parallel workers, the HNSW settings as attributes of the function that scans it.
"""

import importlib

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION knowledge_search_fts(
    p_tenant bigint,
    p_kbs uuid[],
    p_model varchar,
    p_chain varchar[],
    p_region varchar,
    p_configs regconfig[],
    p_query text,
    p_locale_terms tsquery,
    p_n integer,
    p_fts_cap integer,
    OUT fts_ids bigint[],
    OUT fts_kb_ids uuid[],
    OUT fts_article_keys varchar[]
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET max_parallel_workers_per_gather = 0
AS $fn$
DECLARE
    cfg regconfig;
    all_words tsquery := '';
    any_word tsquery := '';
BEGIN
    -- The query's words stemmed once per language of the chain: all of them, or any of them.
    FOREACH cfg IN ARRAY p_configs LOOP
        all_words := all_words || plainto_tsquery(cfg, p_query);
        any_word := any_word || replace(plainto_tsquery(cfg, p_query)::text, '&', '|')::tsquery;
    END LOOP;
    WITH fts_match AS MATERIALIZED (
        SELECT c.id, c.kb_id, c.article_key, c.tsv FROM knowledge_chunk c
        WHERE (c.tsv || array_to_tsvector(ARRAY['~' || c.locale::text])) @@ (all_words && p_locale_terms)
          AND c.tenant_id = p_tenant AND c.kb_id = ANY(p_kbs) AND c.model_id = p_model
          AND c.status = 'published' AND c.locale = ANY(p_chain)
          AND (c.region = '' OR c.region = p_region)
        UNION ALL
        SELECT c.id, c.kb_id, c.article_key, c.tsv FROM knowledge_chunk c
        WHERE (c.tsv || array_to_tsvector(ARRAY['~' || c.locale::text])) @@ (any_word && p_locale_terms)
          AND NOT c.tsv @@ all_words
          AND c.tenant_id = p_tenant AND c.kb_id = ANY(p_kbs) AND c.model_id = p_model
          AND c.status = 'published' AND c.locale = ANY(p_chain)
          AND (c.region = '' OR c.region = p_region)
    )
    SELECT coalesce(array_agg(m.id ORDER BY m.rank DESC, m.id), '{}'),
           coalesce(array_agg(m.kb_id ORDER BY m.rank DESC, m.id), '{}'),
           coalesce(array_agg(m.article_key::varchar ORDER BY m.rank DESC, m.id), '{}')
    INTO fts_ids, fts_kb_ids, fts_article_keys
    FROM (
        SELECT t.id, t.kb_id, t.article_key, t.rank
        FROM (
            SELECT fm.id, fm.kb_id, fm.article_key, ts_rank(fm.tsv, any_word) AS rank
            FROM fts_match fm LIMIT p_fts_cap
        ) t
        ORDER BY t.rank DESC, t.id
        LIMIT p_n
    ) m;
END
$fn$;

CREATE FUNCTION knowledge_search_fuse(
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
    p_fts_w double precision
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
    hit_relevance double precision
)
LANGUAGE plpgsql
SET hnsw.ef_search = 40
SET hnsw.iterative_scan = relaxed_order
SET plan_cache_mode = force_generic_plan
SET max_parallel_workers_per_gather = 0
AS $fn$
BEGIN
    PERFORM set_config('hnsw.ef_search', p_ef::text, true);
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
        LIMIT p_k
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
        SELECT DISTINCT ON (c.translation_id)
               c.id, c.kb_id, c.article_key, c.locale, c.region, c.title, c.heading_path, c.text
        FROM pref p
        JOIN knowledge_chunk c ON c.translation_id = p.translation_id AND c.model_id = p_model
        LEFT JOIN cand f ON f.id = c.id
        ORDER BY c.translation_id, f.score DESC NULLS LAST, ((c.embedding::halfvec(512)) <=> p_vec)
    )
    SELECT b.id::bigint, b.kb_id, b.article_key::varchar, b.locale::varchar, b.region::varchar,
           b.title::varchar, b.heading_path::varchar[], b.text, a.score::double precision,
           (SELECT 1 - ((c.embedding::halfvec(512)) <=> p_vec)
            FROM knowledge_chunk c JOIN vec v ON v.id = c.id WHERE v.r = 1)::double precision
    FROM best b JOIN arts a ON a.kb_id = b.kb_id AND a.article_key = b.article_key
    ORDER BY a.score DESC, b.article_key;
END
$fn$;

DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision
);
CREATE FUNCTION knowledge_search_chunks(
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
    p_fts_w double precision
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
    hit_relevance double precision
)
LANGUAGE sql
AS $fn$
    SELECT s.* FROM knowledge_search_fts(
        p_tenant, p_kbs, p_model, p_chain, p_region, p_configs, p_query, p_locale_terms, p_n, p_fts_cap
    ) f
    CROSS JOIN LATERAL knowledge_search_fuse(
        p_tenant, p_kbs, p_model, p_chain, p_region, p_vec, f.fts_ids, f.fts_kb_ids, f.fts_article_keys,
        p_n, p_k, p_ef, p_rrf_k, p_fts_w
    ) s
$fn$;
"""

# Back to 0006: its function, created by its own text.
BACKWARD = (
    """
DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision
);
DROP FUNCTION knowledge_search_fuse(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, bigint[], uuid[], varchar[],
    integer, integer, integer, double precision, double precision
);
DROP FUNCTION knowledge_search_fts(
    bigint, uuid[], varchar, varchar[], varchar, regconfig[], text, tsquery, integer, integer
);
"""
    + importlib.import_module("apps.knowledge.migrations.0006_search_function").FORWARD
)


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0006_search_function"),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD, hints={"silo": "region"}),
    ]
