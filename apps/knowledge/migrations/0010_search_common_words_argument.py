"""Full text: the common words come as an argument, from the cache, instead of from pg_stats on every call.

0009 read ANALYZE's most common elements in the full-text function: ~0.25 ms per search, hidden behind the
embedding when search embeds the question, but not when the chat passes its vector (one call, in series).
The list is now read with the knowledge base list, cached per knowledge version (selectors.common_words),
and the function takes it as `p_common_words`. The thresholds and the meaning are 0009's.
"""

import importlib

from django.db import migrations

FORWARD = r"""
DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision, double precision, integer
);
DROP FUNCTION knowledge_search_fts(
    bigint, uuid[], varchar, varchar[], varchar, regconfig[], text, tsquery, integer, integer,
    double precision, integer
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
    p_common_words text[]
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
        p_common_words
    ) f
    CROSS JOIN LATERAL knowledge_search_fuse(
        p_tenant, p_kbs, p_model, p_chain, p_region, p_vec, f.fts_ids, f.fts_kb_ids, f.fts_article_keys,
        p_n, p_k, p_ef, p_rrf_k, p_fts_w
    ) s
$fn$;
"""


def _backward() -> str:
    """0009's two functions, created again by their own text."""
    source = importlib.import_module("apps.knowledge.migrations.0009_search_fts_common_words").FORWARD
    parts = []
    for name in ("knowledge_search_fts", "knowledge_search_chunks"):
        start = source.index(f"CREATE FUNCTION {name}(")
        parts.append(source[start : source.index("$fn$;", start) + len("$fn$;")])
    drops = """
DROP FUNCTION knowledge_search_chunks(
    bigint, uuid[], varchar, varchar[], varchar, halfvec, regconfig[], text, tsquery,
    integer, integer, integer, integer, double precision, double precision, text[]
);
DROP FUNCTION knowledge_search_fts(
    bigint, uuid[], varchar, varchar[], varchar, regconfig[], text, tsquery, integer, integer, text[]
);
"""
    return drops + "\n".join(parts)


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0009_search_fts_common_words"),
    ]

    operations = [
        migrations.RunSQL(FORWARD, _backward(), hints={"silo": "region"}),
    ]
