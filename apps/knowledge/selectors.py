"""Reading knowledge: coverage, lists for the console, and `knowledge_search` (hybrid retrieval).

Search in database functions: the HNSW vector ranking and the full-text ranking are fused with reciprocal
rank fusion; candidates are grouped per article, and each article answers with its best chunk in the
most preferred text it has (user locale before fallbacks, the regional variant before the generic text).
The full-text half runs while the question is embedded (see _search_rows).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import connections
from django.db.models import Count, Q, QuerySet
from django.urls import NoReverseMatch, reverse

from apps.core import sql
from apps.core.context import TenantRef, as_ref, tenant_context
from apps.knowledge.chunking import fts_text, ts_config
from apps.knowledge.embeddings import calibration, get_provider, provider_for_model
from apps.knowledge.models import (
    Article,
    Chunk,
    KnowledgeBase,
    Revision,
    Status,
    Translation,
    XliffImport,
)
from apps.knowledge.version import knowledge_cached

RRF_K = 60  # the constant of Cormack et al.; damps the head of each ranking
# Full-text matches count half: a single shared word ("gültig") must not outrank the meaning of a question
# that only an article in another language answers (measured on the evaluation set: recall@1 0.86 → 0.88).
FTS_WEIGHT = 0.5
# Full-text matches ranked per query (all-word matches first): ranking every chunk that shares one common word
# dominated latency.
FTS_CAP = 100
# Words in more than this share of all chunks, and in more than this many, are left out of the full-text half
# like stop words (knowledge_search_fts; common_words): the GIN index decodes the list of every chunk
# containing a word it looks up, so four such words took ~8 ms at 100,000 chunks, and they rank nothing
# (ts_rank has no inverse document frequency). The count keeps a small knowledge base's words, which may
# still decide there (the evaluation set lost a recall@1 answer when "return" was left out of 72 chunks).
FTS_COMMON_SHARE = 0.1
FTS_COMMON_CHUNKS = 10_000
# Up to this many chunks in the searched knowledge bases (of one embedding model), the vector half ranks
# them all exactly instead of reading the region's shared HNSW index (knowledge_search_fuse): it filters
# tenants after its scan, so a small tenant next to a large one waited for the large one's neighbours and
# lost some of its own. Measured next to 100,000 chunks (bench/bench_knowledge_exact.py, vector half alone):
# exact 1.8 ms for 1,000 chunks, 12.8 ms for 5,000, 24.8 ms for 10,000 (~2.5 us a chunk); HNSW 36.7, 13.9 and
# 7.1 ms with 87-88 % of the exact candidates. Exact is cheaper up to ~5,000 and always complete.
EXACT_SCAN_MAX_CHUNKS = 5_000
# Articles the database returns for the rerank (knowledge_search_fuse's `p_m`); the rerank keeps k of them.
# Five: on both evaluation sets (tune split) ten candidates chose no better (recall@1 0.800 / 0.976 either
# way), and each candidate costs distances to all its chunks (database CPU per search, Northwind set: ~4.5 ms
# for 3 candidates, ~8 ms for 10).
RERANK_CANDIDATES = 5


@dataclass(frozen=True)
class SearchHit:
    kb_id: str
    article_key: str
    locale: str
    region: str | None
    title: str
    heading_path: list[str]
    text: str
    score: float
    citation_url: str
    chunk_id: int = 0
    # How close the article is to the question: the best cosine similarity of its text, title or phrasings
    # in the searched locales. The chat falls back below a threshold (per language, see
    # answer_threshold) instead of answering an off-topic question with the least unrelated article.
    relevance: float = 1.0
    # The rerank's features (rerank_features): fused score, text, title/phrasing and any-language
    # similarity, full-text evidence.
    features: tuple[float, ...] = ()
    # The embedding model of the vectors that found it: its similarities are on that model's scale.
    model_id: str = ""


@dataclass
class LocaleCoverage:
    locale: str
    is_source: bool
    total: int
    published: int = 0
    needs_update: int = 0
    in_progress: int = 0
    missing: int = field(default=0)


# --- console reads -------------------------------------------------------------------------------------
def normalize_region(region: str | None) -> str:
    """A region code as the hub stores it: lower case ("EU" → "eu"), "" for none."""
    return (region or "").strip().lower()


def kb_list() -> QuerySet[KnowledgeBase]:
    return KnowledgeBase.objects.annotate(article_count=Count("articles"))


def kb_get(*, kb_id: Any) -> KnowledgeBase | None:
    try:
        pk = uuid.UUID(str(kb_id))
    except ValueError:
        return None
    return KnowledgeBase.objects.filter(pk=pk).first()


def kbs_coverage(*, kbs: Sequence[KnowledgeBase]) -> dict[Any, list[LocaleCoverage]]:
    """Coverage per locale of several knowledge bases (a list page) in two queries, whatever their size.

    Per locale of each base: generic texts published and current, needing an update after a source
    change, in progress (never published), and articles with no text at all (missing).
    """
    ids = [kb.pk for kb in kbs]
    if not ids:
        return {}
    articles = Article.objects.filter(kb_id__in=ids).values("kb_id").annotate(n=Count("pk"))
    totals = {row["kb_id"]: row["n"] for row in articles}
    live = Q(published_revision__isnull=False) & ~Q(status=Status.ARCHIVED)
    rows = {
        (row["article__kb_id"], row["locale"]): row
        for row in Translation.objects.filter(article__kb_id__in=ids, region="")
        .exclude(status=Status.ARCHIVED)
        .values("article__kb_id", "locale")
        .annotate(
            n_published=Count("pk", filter=live & Q(needs_update=False)),
            n_needs_update=Count("pk", filter=Q(needs_update=True)),
            n_in_progress=Count("pk", filter=Q(published_revision__isnull=True, needs_update=False)),
        )
    }
    result: dict[Any, list[LocaleCoverage]] = {}
    for kb in kbs:
        total = totals.get(kb.pk, 0)
        result[kb.pk] = []
        for locale in kb.locales:
            row: Any = rows.get((kb.pk, locale), {})
            cov = LocaleCoverage(
                locale=locale,
                is_source=locale == kb.source_locale,
                total=total,
                published=row.get("n_published", 0),
                needs_update=row.get("n_needs_update", 0),
                in_progress=row.get("n_in_progress", 0),
            )
            cov.missing = total - cov.published - cov.needs_update - cov.in_progress
            result[kb.pk].append(cov)
    return result


def kb_coverage(*, kb: KnowledgeBase) -> list[LocaleCoverage]:
    """Per locale: how many articles are published, need an update after a source change, or are missing."""
    return kbs_coverage(kbs=[kb])[kb.pk]


def article_matrix(*, kb: KnowledgeBase) -> list[tuple[Article, dict[str, list[Translation]]]]:
    """Articles with their translations per locale (generic first, then variants): two queries."""
    articles = list(Article.objects.filter(kb=kb).order_by("key"))
    by_article: dict[int, dict[str, list[Translation]]] = {a.pk: {} for a in articles}
    for t in Translation.objects.filter(article__kb=kb).order_by("locale", "region"):
        by_article[t.article_id].setdefault(t.locale, []).append(t)
    return [(a, by_article[a.pk]) for a in articles]


def review_queue(*, locales: Sequence[str] = (), regions: Sequence[str] = ()) -> QuerySet[Translation]:
    """Texts waiting for review, limited to an editor's locales and regions when given."""
    qs = Translation.objects.filter(status=Status.IN_REVIEW).select_related("article__kb")
    if locales:
        qs = qs.filter(locale__in=list(locales))
    if regions:
        qs = qs.filter(Q(region="") | Q(region__in=[normalize_region(r) for r in regions]))
    return qs.order_by("updated_at")


def member_may_edit(*, membership: Any, locale: str, region: str = "") -> bool:
    """A localization editor limited to some locales/regions may edit only those (empty: no limit)."""
    if membership is None:
        return True  # platform operators
    locales = list(getattr(membership, "locales", []) or [])
    regions = [normalize_region(r) for r in (getattr(membership, "regions", []) or [])]
    if locales and locale not in locales:
        return False
    return not (region and regions and normalize_region(region) not in regions)


@dataclass
class EditorState:
    """What the side-by-side editor shows for one article, locale and region."""

    article: Article
    target: Translation | None  # the text edited here; None while the translation or variant is missing
    source: Translation | None  # the source-locale text it follows (the region's source variant first)
    base: Translation | None  # a new variant starts from the generic text of its locale
    existing: list[Translation]  # every text of the article, for links between them
    revisions: list[Revision]  # the target's history, newest first


def editor_state(*, kb: KnowledgeBase, article: Article, locale: str, region: str = "") -> EditorState:
    """The texts around one translation or regional variant: three queries."""
    texts = list(
        Translation.objects.filter(article=article)
        .select_related("published_revision", "source_revision")
        .order_by("locale", "region")
    )
    by_key = {(t.locale, t.region): t for t in texts}
    target = by_key.get((locale, region))
    source = by_key.get((kb.source_locale, region)) or by_key.get((kb.source_locale, ""))
    if source is not None and source is target:
        source = None
    base = by_key.get((locale, "")) if region and target is None else None
    revisions = list(target.revisions.order_by("-number")) if target is not None else []
    return EditorState(
        article=article, target=target, source=source, base=base, existing=texts, revisions=revisions
    )


def latest_revision(*, translation: Translation) -> Revision | None:
    return translation.revisions.order_by("-number").first()


def user_labels(*, ids: Sequence[int | None]) -> dict[int, str]:
    """Usernames of revision authors and reviewers (users live in the control database: one query)."""
    from django.contrib.auth import get_user_model

    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(get_user_model().objects.filter(pk__in=wanted).values_list("pk", "username"))


# --- search --------------------------------------------------------------------------------------------
_LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}|[A-Za-z]{4}))?$")


def normalize_locale(locale: str) -> str:
    match = _LOCALE.match((locale or "").strip())
    if not match:
        return settings.HUB_KNOWLEDGE_FALLBACK_LOCALE
    lang, sub = match.group(1).lower(), match.group(2)
    if not sub:
        return lang
    return f"{lang}-{sub.upper() if len(sub) == 2 else sub.title()}"


def locale_chain(*, locale: str, source_locales: Sequence[str] = ()) -> list[str]:
    """The locales an answer may come from, most preferred first: fr-CA → fr → fallback → KB sources."""
    locale = normalize_locale(locale)
    chain = [locale, locale.split("-", 1)[0], settings.HUB_KNOWLEDGE_FALLBACK_LOCALE, *source_locales]
    return list(dict.fromkeys(chain))


# The hybrid search is in database functions (apps/knowledge/sql/), so a search sends short calls instead
# of ~12 KB of SQL and reuses the plans that PL/pgSQL keeps per connection; the HNSW settings are attributes
# of the function. The vector half reads the half-precision HNSW index (migration 0003: half the size of a
# float32 index, so it stays in memory; recall is measured by bench_knowledge) and takes ranks from the index
# order itself; knowledge bases with few chunks are ranked by an exact scan of just their chunks instead
# (EXACT_SCAN_MAX_CHUNKS), which the shared index's other tenants cannot slow down. The
# full-text half ranks a bounded set of the matches that the GIN index finds (a common word matches
# thousands of chunks; ranking them all dominated latency), chunks with all the words of the question
# first. Reciprocal-rank fusion scores articles; each keeps its best chunk in the preferred locale and region.
#
# Two calls when the question still has to be embedded: the full-text half (_FTS_SQL) is sent first and runs
# on the database's core while this process embeds the question; the second (_FUSE_SQL) runs the vector half
# and the fusion, with the full-text ranking as arguments. With a vector given, one call does both.
_SEARCH_SQL = (
    "SELECT * FROM knowledge_search_chunks(%(tenant)s::bigint, %(kbs)s::uuid[], %(model)s::varchar,"
    " %(chain)s::varchar[], %(region)s::varchar, %(vec)s::halfvec, %(configs)s::regconfig[], %(ftsq)s::text,"
    " %(locale_terms)s::tsquery, %(n)s::integer, %(k)s::integer, %(ef)s::integer, %(fts_cap)s::integer,"
    " %(rrf_k)s::float8, %(fts_w)s::float8, %(common_words)s::text[], %(exact)s::boolean, %(m)s::integer)"
)
# The full-text ranking comes back as array literals and goes back as they are: parsing it into Python
# objects and adapting them again cost more than the arrays' own round trip.
_FTS_SQL = (
    "SELECT fts_ids::text, fts_kb_ids::text, fts_article_keys::text FROM knowledge_search_fts("
    "%(tenant)s::bigint, %(kbs)s::uuid[], %(model)s::varchar, %(chain)s::varchar[], %(region)s::varchar,"
    " %(configs)s::regconfig[], %(ftsq)s::text, %(locale_terms)s::tsquery, %(n)s::integer,"
    " %(fts_cap)s::integer, %(common_words)s::text[])"
)
_FUSE_SQL = (
    "SELECT * FROM knowledge_search_fuse(%(tenant)s::bigint, %(kbs)s::uuid[], %(model)s::varchar,"
    " %(chain)s::varchar[], %(region)s::varchar, %(vec)s::halfvec, %(fts_ids)s::bigint[],"
    " %(fts_kb_ids)s::uuid[], %(fts_article_keys)s::varchar[], %(n)s::integer, %(k)s::integer,"
    " %(ef)s::integer, %(rrf_k)s::float8, %(fts_w)s::float8, %(exact)s::boolean, %(m)s::integer)"
)
# Must match the expression of the HNSW index (chunk_embedding_hnsw_half) for the planner to use it; in
# parentheses, because <=> binds more loosely than arithmetic ("1 - a <=> b" is "(1 - a) <=> b").
DISTANCE_SQL = "((c.embedding::halfvec(512)) <=> %(vec)s::halfvec(512))"
# The expression of the full-text index (chunk_tsv_locale_gin, migration 0004): each chunk's words plus a
# "~<locale>" term, so the GIN index applies the locale filter too and only rows of the chain are read.
LOCALIZED_TSV_SQL = "(c.tsv || array_to_tsvector(ARRAY['~' || c.locale::text]))"
_FILTERS = (
    "c.tenant_id = %(tenant)s AND c.kb_id = ANY(%(kbs)s::uuid[]) AND c.model_id = %(model)s"
    " AND c.status = 'published' AND c.locale = ANY(%(chain)s::varchar[])"
    " AND (c.region = '' OR c.region = %(region)s)"
)


def search_breadth(*, k: int) -> tuple[int, int]:
    """Candidates per half of the fusion (at least 4 chunks per requested article) and HNSW's ef_search."""
    candidates = max(settings.HUB_KNOWLEDGE_CANDIDATES, 4 * k)
    return candidates, max(settings.HUB_KNOWLEDGE_EF_SEARCH, candidates)


def vector_literal(vector: Any) -> str:
    """A query vector as a halfvec literal: five significant digits keep more than half precision does.

    One %-format of all the values: a third faster than formatting them one by one.
    """
    values = vector.tolist()
    return ("[" + ",".join(["%.5g"] * len(values)) + "]") % tuple(values)


def search_params(
    *,
    tenant_id: int,
    query: str,
    chain: list[str],
    kb_ids: list[str],
    model_id: str,
    region: str,
    k: int,
    common_words: Sequence[str] = (),
    exact: bool = False,
) -> dict[str, Any]:
    """The parameters of the search calls for the knowledge bases of one embedding model, but the vector.

    `exact`: rank the vector half by an exact scan of these knowledge bases' chunks, not the HNSW index
    (for few chunks: see EXACT_SCAN_MAX_CHUNKS).
    """
    candidates, ef_search = search_breadth(k=k)
    configs = tuple(dict.fromkeys(ts_config(loc) for loc in chain))
    return {
        "tenant": tenant_id,
        "kbs": kb_ids,
        "model": model_id,
        "chain": chain,
        "region": region,
        "n": candidates,
        "k": k,
        "rrf_k": RRF_K,
        "fts_w": FTS_WEIGHT,
        "configs": list(configs),
        "ftsq": fts_text(query),
        # tsquery quoting: a quote is doubled, a backslash escaped (locale codes have neither, but a setting
        # may be malformed).
        "locale_terms": " | ".join(
            "'~{}'".format(loc.replace("\\", "\\\\").replace("'", "''")) for loc in chain
        ),
        "fts_cap": FTS_CAP,
        "common_words": list(common_words),
        "ef": ef_search,
        "exact": exact,
        "m": max(k, RERANK_CANDIDATES),
    }


def search_statement(
    *,
    tenant_id: int,
    query: str,
    vector: Any,
    chain: list[str],
    kb_ids: list[str],
    model_id: str,
    region: str,
    k: int,
    common_words: Sequence[str] = (),
    exact: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The one-call search (both halves) for the knowledge bases of one model, with its parameters."""
    params = search_params(
        tenant_id=tenant_id,
        query=query,
        chain=chain,
        kb_ids=kb_ids,
        model_id=model_id,
        region=region,
        k=k,
        common_words=common_words,
        exact=exact,
    )
    return _SEARCH_SQL, {**params, "vec": vector_literal(vector)}


def _embed_query(*, model_id: str, text: str) -> Any:
    return provider_for_model(model_id).embed_query(text)


def _search_rows(*, alias: str, params: dict[str, Any], vector: Any, embed: Callable[[], Any]) -> list[Any]:
    """Run a search; without `vector`, embed the question while the database runs the full-text half.

    The full-text call is sent in pipeline mode, which does not wait for its answer; the database works on
    it while `embed()` runs here (the forward pass is numpy, on the other core), so only the vector half
    and the fusion are left when the vector is ready.

    The calls are server-side prepared statements, as apps/core/sql.py runs the chat's hot path (~0.2 ms
    less per search than client-side binding: no quoting of the 5 KB vector, no parsing and planning of
    the call): on the Django connection, so they join its transaction, raise Django's database errors and
    are logged with the ORM's queries.
    """
    if vector is not None:
        return sql.fetch(alias, _SEARCH_SQL, {**params, "vec": vector_literal(vector)})
    with sql.prepared_cursor(alias, statements=[_FTS_SQL, _FUSE_SQL]) as cursor:
        connection = cursor.connection
        with psycopg.Cursor(connection) as fts_cursor, connection.pipeline():
            fts_cursor.execute(_FTS_SQL, params, prepare=True)
            literal = vector_literal(embed())
            fts_ids, fts_kb_ids, fts_article_keys = fts_cursor.fetchone() or ("{}", "{}", "{}")
            fused = {
                **params,
                "vec": literal,
                "fts_ids": fts_ids,
                "fts_kb_ids": fts_kb_ids,
                "fts_article_keys": fts_article_keys,
            }
            cursor.execute(_FUSE_SQL, fused, prepare=True)
        # Fetched by leaving pipeline mode: its closing sync waits for this answer in the same round trip.
        return cursor.fetchall()


_COMMON_WORDS_SQL = (
    "SELECT coalesce(array_agg(m.lexeme ORDER BY m.lexeme), '{}') FROM pg_stats s"
    " JOIN pg_class t ON t.oid = 'knowledge_chunk'::regclass"
    " CROSS JOIN unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS m(lexeme, share)"
    " WHERE s.schemaname = current_schema() AND s.tablename = 'knowledge_chunk' AND s.attname = 'tsv'"
    " AND m.lexeme IS NOT NULL AND m.share > %(share)s AND m.share * t.reltuples > %(chunks)s"
)


def common_words(
    *, alias: str, share: float = FTS_COMMON_SHARE, chunks: int = FTS_COMMON_CHUNKS
) -> list[str]:
    """Lexemes in more than `share` of all chunks and more than `chunks` chunks of a region's database.

    From ANALYZE's most common elements of the tsvector column (all tenants: the GIN lists that cost are
    the whole table's). Search reads them with the knowledge base list, from the cache.
    """
    with connections[alias].cursor() as cursor:
        cursor.execute(_COMMON_WORDS_SQL, {"share": share, "chunks": chunks})
        return list(cursor.fetchone()[0])


def _search_setup(*, tenant: Any) -> dict[str, Any]:
    """What every search needs first, cached per knowledge version (bumped when text is indexed or a
    knowledge base is created or switches model): a search asks the cache, not the database.

    `kbs`: id, source locale and embedding model of each knowledge base; `common_words`: see common_words
    (as of the last version bump: statistics only move with indexing, and ANALYZE follows it); `chunks`:
    published chunks per knowledge base in its embedding model, which decides the exact vector scan.
    """
    ref = as_ref(tenant)

    def load() -> dict[str, Any]:
        with tenant_context(ref):
            rows = KnowledgeBase.objects.values_list(
                "id", "source_locale", "embedding_model", "helpcenter_enabled", "helpcenter_handle"
            )
            kbs = [(str(kb_id), source, model) for kb_id, source, model, _on, _handle in rows]
            public = [(str(row[0]), row[4]) for row in rows if row[3] and row[4]]
            counted = (
                Chunk.objects.filter(status=Status.PUBLISHED)
                .values_list("kb_id", "model_id")
                .annotate(n=Count("pk"))
                if kbs
                else []
            )
            models = {kb_id: model for kb_id, _source, model in kbs}
            chunks = {str(kb_id): n for kb_id, model, n in counted if models.get(str(kb_id)) == model}
        return {
            "kbs": kbs,
            "common_words": common_words(alias=ref.db_alias) if kbs else [],
            "chunks": chunks,
            "public": public_article_bases(tenant=ref, kbs=public),
        }

    # "-3": entries cached before the help center's public bases were added are not read.
    return knowledge_cached(tenant_id=ref.id, name="search-setup-3", load=load)


# Issue 21: citations of a knowledge base with a public help center link there. The help center app (above
# knowledge) registers how those URLs start (its custom domains live in the control database).
PublicBases = Callable[[TenantRef, list[tuple[str, str]]], dict[str, str]]
_public_bases: list[PublicBases] = []


def register_public_bases(func: PublicBases) -> None:
    """Let `func(tenant, [(kb_id, handle)])` say where each base's public articles live (AppConfig.ready)."""
    if func not in _public_bases:
        _public_bases.append(func)


def public_article_bases(*, tenant: Any, kbs: list[tuple[str, str]]) -> dict[str, str]:
    """Absolute URL prefix (no trailing slash) of each help-center knowledge base's public pages."""
    bases: dict[str, str] = {}
    for func in _public_bases:
        if kbs:
            bases.update(func(as_ref(tenant), kbs))
    return bases


def search_kbs(*, tenant: Any) -> list[tuple[str, str, str]]:
    """Id, source locale and embedding model of each of the tenant's knowledge bases, as search needs them."""
    return list(_search_setup(tenant=tenant)["kbs"])


def search_chunk_counts(*, tenant: Any) -> dict[str, int]:
    """Published chunks per knowledge base (in its embedding model) as search last counted them."""
    return dict(_search_setup(tenant=tenant)["chunks"])


def exact_vector_scan(*, chunks: dict[str, int], kb_ids: Sequence[str]) -> bool:
    """Whether the vector half scans these knowledge bases exactly (few chunks) or uses the HNSW index."""
    return sum(chunks.get(kb_id, 0) for kb_id in kb_ids) <= EXACT_SCAN_MAX_CHUNKS


# Article keys as the key validator allows them: nothing in them that a URL would quote.
_PLAIN_KEY = re.compile(r"^[a-z0-9._-]+$")


def _citation_url(
    *,
    slug: str,
    kb_id: str,
    key: str,
    locale: str,
    region: str | None,
    prefixes: dict[str, str],
    public: dict[str, str] | None = None,
) -> str:
    """The article's public help center URL when its base has one (`public`, from the cached search setup),
    else its console URL, for the locale and region; `prefixes` keeps one reversed URL per base.

    reverse() costs ~20-40 us a call: a search reverses once per knowledge base, not once per hit.
    """
    base = (public or {}).get(kb_id)
    if base is not None:
        path = key if _PLAIN_KEY.match(key) else quote(key, safe="")
        return f"{base}/{locale}/articles/{path}/" + (f"?region={region}" if region else "")
    if kb_id not in prefixes:
        try:
            url = reverse("knowledge:article", kwargs={"tenant_slug": slug, "kb_id": kb_id, "key": "key"})
        except NoReverseMatch:
            url = f"/t/{slug}/knowledge/{kb_id}/articles/key/"
        prefixes[kb_id] = url.removesuffix("key/")
    if _PLAIN_KEY.match(key):
        url = f"{prefixes[kb_id]}{key}/"
    else:
        url = reverse("knowledge:article", kwargs={"tenant_slug": slug, "kb_id": kb_id, "key": key})
    return f"{url}?locale={locale}" + (f"&region={region}" if region else "")


def knowledge_search(
    *,
    tenant: Any,
    query: str,
    locale: str,
    region: str | None = None,
    k: int = 5,
    kb: KnowledgeBase | str | None = None,
    query_vector: Any = None,
) -> list[SearchHit]:
    """Find the `k` articles that best answer `query`, each with its best chunk, for a locale and region.

    `query_vector` is the question's embedding when the caller already made it with the current provider
    (the chat does, to route intents): it is used for knowledge bases indexed with that provider's model.

    Only published text of the tenant is searched; a regional variant beats the generic text of its
    locale, and the user's locale beats the fallbacks, but an article found in any locale of the chain
    counts (so a German question finds an English-only article).
    """
    ref = as_ref(tenant)
    query = (query or "").strip()[:2000]
    if not query or k <= 0:
        return []
    region_code = normalize_region(region)
    setup = _search_setup(tenant=ref)
    rows: list[tuple[str, str, str]] = setup["kbs"]
    if kb is not None:
        wanted = str(kb.pk if isinstance(kb, KnowledgeBase) else kb)
        rows = [r for r in rows if r[0] == wanted]
    if not rows:
        return []
    chain = locale_chain(locale=locale, source_locales=sorted({r[1] for r in rows}))
    by_model: dict[str, list[str]] = {}
    for kb_id, _source, model_id in rows:
        by_model.setdefault(model_id, []).append(kb_id)
    hits: list[SearchHit] = []
    prefixes: dict[str, str] = {}
    alias = ref.db_alias
    current_model = get_provider().model_id if query_vector is not None else ""
    for model_id, kb_ids in by_model.items():
        params = search_params(
            tenant_id=ref.id,
            query=query,
            chain=chain,
            kb_ids=kb_ids,
            model_id=model_id,
            region=region_code,
            k=k,
            common_words=setup["common_words"],
            exact=exact_vector_scan(chunks=setup["chunks"], kb_ids=kb_ids),
        )
        found = _search_rows(
            alias=alias,
            params=params,
            vector=query_vector if query_vector is not None and model_id == current_model else None,
            embed=partial(_embed_query, model_id=model_id, text=query),
        )
        for row in found:
            chunk_id, kb_id, key, loc, reg, title, path, text, score, _nearest = row[:10]
            features = rerank_features(score=score, sims=(*row[10:13], row[14]), fts_rank=row[13])
            hits.append(
                SearchHit(
                    kb_id=str(kb_id),
                    article_key=key,
                    locale=loc,
                    region=reg or None,
                    title=title,
                    heading_path=list(path or []),
                    text=text,
                    score=float(score),
                    citation_url=_citation_url(
                        slug=ref.slug,
                        kb_id=str(kb_id),
                        key=key,
                        locale=loc,
                        region=reg,
                        prefixes=prefixes,
                        public=setup.get("public"),
                    ),
                    chunk_id=chunk_id,
                    relevance=max(features[1], features[2]),
                    features=features,
                    model_id=model_id,
                )
            )
    return rerank(hits)[:k]


def rerank_features(*, score: float, sims: Sequence[float | None], fts_rank: int | None) -> tuple[float, ...]:
    """An article's features for the rerank: its fused rank score (scaled to ~1 for the best rank of both
    halves); the best similarity of its text and of its title/phrasings in the searched languages, of any
    chunk read; its full-text evidence (1 / (RRF_K + rank), scaled the same way; 0 when no chunk matched a
    word); the best similarity of its title/phrasings in any language."""
    content, key, any_chunk, key_any = (float(v) if v is not None else 0.0 for v in sims)
    scale = RRF_K + 1
    fts = scale / (RRF_K + fts_rank) if fts_rank else 0.0
    return (float(score) * scale, content, key, any_chunk, fts, key_any)


def rerank(hits: list[SearchHit]) -> list[SearchHit]:
    """Order the candidates by a weighted sum of their features (settings.HUB_KNOWLEDGE_RERANK_WEIGHTS,
    fitted on the tune split of the evaluation set by bench/tune_rerank.py; the weights of the hit's
    embedding model, embeddings.calibration), best first.

    The score a hit carries becomes its rerank score, so several knowledge bases (models) merge on one scale.
    """
    weights = {m: calibration(m).rerank_weights for m in {hit.model_id for hit in hits}}  # per model
    ranked = [
        dataclasses.replace(
            hit, score=sum(w * f for w, f in zip(weights[hit.model_id], hit.features, strict=False))
        )
        for hit in hits
    ]
    ranked.sort(key=lambda h: (-h.score, h.article_key))
    return ranked


def kb_export_rows(*, kb: KnowledgeBase) -> Iterator[dict[str, Any]]:
    """Every translation and variant as an import line (the working copy and its status)."""
    qs = (
        Translation.objects.filter(article__kb=kb)
        .select_related("article")
        .order_by("article__key", "locale", "region")
    )
    for t in qs.iterator(chunk_size=500):
        yield {
            "key": t.article.key,
            "locale": t.locale,
            "region": t.region or None,
            "title": t.title,
            "body": t.body,
            "status": t.status,
            # Only when there are some: files exported before phrasings existed round-trip unchanged.
            **({"phrasings": list(t.phrasings)} if t.phrasings else {}),
        }


# --- XLIFF imports (issue 21, slice "xliff2") --------------------------------------------------------------
def xliff_imports_recent(*, kb: KnowledgeBase, membership: Any, limit: int = 20) -> list[XliffImport]:
    """The knowledge base's latest imports that this member may see (their locales and regions), newest first;
    without the stored files."""
    rows = XliffImport.objects.filter(kb=kb).defer("content").order_by("-created_at", "-pk")[: limit * 5]
    return [
        job for job in rows if member_may_edit(membership=membership, locale=job.locale, region=job.region)
    ][:limit]


def xliff_import_get(*, kb: KnowledgeBase, import_id: int, membership: Any) -> XliffImport | None:
    """One import of `kb`, or None when there is none or the member may not edit its locale or region."""
    job = XliffImport.objects.filter(kb=kb, pk=import_id).defer("content").first()
    if job is None or not member_may_edit(membership=membership, locale=job.locale, region=job.region):
        return None
    return job
