-- The full-text half of the hybrid search (apps/knowledge/selectors.py, knowledge_search): the chunks that
-- match the question's words, ranked, returned as three arrays (ids, knowledge bases, article keys, best
-- first) that knowledge_search_fuse takes as arguments. A function of its own so that the search can send it
-- first (psycopg pipeline mode) and embed the question while PostgreSQL works on it.
--
-- The words are stemmed once per language of the chain (`p_configs`), leaving out the words most chunks
-- contain (`p_common_words`, selectors.common_words, cached per knowledge version): the GIN index decodes the
-- list of every chunk containing a word it looks up, and such words rank nothing (ts_rank has no inverse
-- document frequency). Chunks with all the words come first, then chunks with any; at most `p_fts_cap`
-- matches are ranked. A question with no word left matches nothing. The match is written as the expression
-- of the localized GIN index (chunk_tsv_locale_gin, selectors.LOCALIZED_TSV_SQL) so the index applies the
-- locale filter too.
--
-- A forced generic plan: PL/pgSQL keeps it per connection, and PostgreSQL's own choice ("auto") kept
-- planning again. No parallel workers: for this query a generic plan chose a parallel append whose worker
-- start-up cost more than the query.
CREATE OR REPLACE FUNCTION knowledge_search_fts(
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
    p_common_words text[],
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
    words text[];
    all_words tsquery := '';
    any_word tsquery := '';
BEGIN
    -- The query's words stemmed once per language of the chain, but those most chunks contain (see
    -- apps/knowledge/selectors.py, common_words): all of them, or any of them.
    FOREACH cfg IN ARRAY p_configs LOOP
        words := ARRAY(
            SELECT '''' || replace(replace(w, '\', '\\'), '''', '''''') || ''''
            FROM unnest(tsvector_to_array(to_tsvector(cfg, p_query))) AS w
            WHERE w <> ALL (p_common_words)
        );
        IF cardinality(words) > 0 THEN
            all_words := all_words || array_to_string(words, ' & ')::tsquery;
            any_word := any_word || array_to_string(words, ' | ')::tsquery;
        END IF;
    END LOOP;
    -- No word left (only stop words or common ones): nothing to match. Not an empty query && the locale
    -- terms, which is the locale terms alone and matched every chunk of the chain (so 0007 did for a
    -- question of stop words).
    IF numnode(any_word) = 0 THEN
        fts_ids := '{}';
        fts_kb_ids := '{}';
        fts_article_keys := '{}';
        RETURN;
    END IF;
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
