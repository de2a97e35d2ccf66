"""Full text: words that most chunks contain are left out of the full-text half.

The GIN index decodes the list of every chunk that contains a word it looks up: a question of four words
found in most chunks took ~8 ms at 100,000 chunks (the full-text half otherwise takes ~0.7 ms), and such
words rank nothing (`ts_rank` has no inverse document frequency). Words in more than `p_fts_common` of the
chunks and in more than `p_fts_common_chunks` chunks, as ANALYZE's most common elements of the tsvector
column count them, are skipped like stop words; a question made only of them is answered by the vector half
alone. The count keeps a small knowledge base's words (the evaluation set lost a recall@1 answer when
"return" was skipped in its 72 chunks).

A question with no word left (only stop words or common ones) now matches nothing: 0007 matched it against
every chunk of the chain's locales (an empty tsquery && the locale terms is the locale terms alone).

The function's new argument changes its signature, so it is dropped and created again, with the one-call
search (`knowledge_search_chunks`) that calls it.
"""

import importlib

from django.db import migrations

FORWARD = r"""
DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision
);
DROP FUNCTION knowledge_search_fts(
    bigint, uuid[], varchar, varchar[], varchar, regconfig[], text, tsquery, integer, integer
);
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
    p_fts_common double precision,
    p_fts_common_chunks integer,
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
    common text[];
    words text[];
    all_words tsquery := '';
    any_word tsquery := '';
BEGIN
    -- Words in more than p_fts_common of all chunks and more than p_fts_common_chunks chunks, as ANALYZE
    -- last counted them: the GIN index decodes every chunk id of a word it looks up, so a query of four
    -- such words took ~8 ms at 100,000 chunks, and they tell the articles apart no better than stop words.
    -- (A small knowledge base keeps all its words: there a word in many chunks may still decide.)
    SELECT coalesce(array_agg(m.lexeme), '{}') INTO common
    FROM pg_stats s
    JOIN pg_class t ON t.oid = 'knowledge_chunk'::regclass
    CROSS JOIN unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS m(lexeme, share)
    WHERE s.schemaname = current_schema() AND s.tablename = 'knowledge_chunk' AND s.attname = 'tsv'
      AND m.lexeme IS NOT NULL AND m.share > p_fts_common AND m.share * t.reltuples > p_fts_common_chunks;
    -- The query's other words stemmed once per language of the chain: all of them, or any of them.
    FOREACH cfg IN ARRAY p_configs LOOP
        words := ARRAY(
            SELECT '''' || replace(replace(w, '\', '\\'), '''', '''''') || ''''
            FROM unnest(tsvector_to_array(to_tsvector(cfg, p_query))) AS w
            WHERE w <> ALL (common)
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
    p_fts_w double precision,
    p_fts_common double precision,
    p_fts_common_chunks integer
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
        p_tenant, p_kbs, p_model, p_chain, p_region, p_configs, p_query, p_locale_terms, p_n, p_fts_cap,
        p_fts_common, p_fts_common_chunks
    ) f
    CROSS JOIN LATERAL knowledge_search_fuse(
        p_tenant, p_kbs, p_model, p_chain, p_region, p_vec, f.fts_ids, f.fts_kb_ids, f.fts_article_keys,
        p_n, p_k, p_ef, p_rrf_k, p_fts_w
    ) s
$fn$;
"""


def _backward() -> str:
    """0007's two functions, created again by their own text."""
    source = importlib.import_module("apps.knowledge.migrations.0007_search_split_halves").FORWARD
    parts = []
    for name in ("knowledge_search_fts", "knowledge_search_chunks"):
        start = source.index(f"CREATE FUNCTION {name}(")
        parts.append(source[start : source.index("$fn$;", start) + len("$fn$;")])
    drops = """
DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision, double precision, integer
);
DROP FUNCTION knowledge_search_fts(
    bigint, uuid[], varchar, varchar[], varchar, regconfig[], text, tsquery, integer, integer,
    double precision, integer
);
"""
    return drops + "\n".join(parts)


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0008_search_best_chunk_lazy_distance"),
    ]

    operations = [
        migrations.RunSQL(FORWARD, _backward(), hints={"silo": "region"}),
    ]
