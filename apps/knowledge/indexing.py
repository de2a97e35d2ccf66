"""Indexing published text: chunk, embed what is new, store vectors and full-text entries.

Runs in Celery (see tasks.py). Idempotent: chunks are keyed by a hash of their content, so a redelivered
task or an unchanged re-publish embeds nothing; text that is no longer published leaves the index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from django.db import connections, transaction
from pgvector.psycopg.vector import register_vector_info
from psycopg.types import TypeInfo

from apps.core.context import current_tenant
from apps.knowledge.chunking import (
    ChunkText,
    chunk_hash,
    chunk_markdown,
    embedding_input,
    fts_text,
    ts_config,
)
from apps.knowledge.embeddings import EmbeddingProvider, provider_for_model
from apps.knowledge.models import EMBEDDING_DIMENSIONS, Chunk, ChunkKind, KnowledgeBase, Status, Translation
from apps.knowledge.version import knowledge_version_bump

logger = logging.getLogger(__name__)
EMBED_BATCH = 128  # chunks per embedding call and per INSERT


@dataclass
class _Pending:
    translation: Translation
    model_id: str
    hash: str
    position: int
    heading_path: tuple[str, ...]
    title: str
    text: str
    kind: str = ChunkKind.CONTENT

    @property
    def embedding_input(self) -> str:
        """A piece of text is embedded under its title and headings; a title or phrasing alone (it is
        matched question-to-question)."""
        if self.kind != ChunkKind.CONTENT:
            return self.text
        return embedding_input(title=self.title, heading_path=self.heading_path, text=self.text)


def search_pieces(*, title: str, body: str, phrasings: list[str]) -> list[tuple[str, ChunkText]]:
    """What of a published text is indexed: its pieces, its title and each phrasing, with their kind.

    Titles and phrasings come after the pieces (positions go on), so a content chunk keeps its position and
    hash when phrasings change.
    """
    pieces = [(str(ChunkKind.CONTENT), piece) for piece in chunk_markdown(body or title)]
    extra = [(str(ChunkKind.TITLE), title)] + [(str(ChunkKind.PHRASING), p) for p in phrasings]
    for kind, text in extra:
        pieces.append((kind, ChunkText(heading_path=(f"\x00{kind}",), text=text, position=len(pieces))))
    return pieces


_INSERT_SQL = """
INSERT INTO knowledge_chunk (
    created_at, updated_at, tenant_id, kb_id, translation_id, article_key, locale, region, status,
    chunk_hash, position, title, heading_path, text, model_id, embedding, ts_config, tsv, kind
)
SELECT now(), now(), %(tenant)s, u.kb_id, u.translation_id, u.article_key, u.locale, u.region, 'published',
       u.chunk_hash, u.position, u.title, string_to_array(u.heading_path, E'\\x1f'), u.text, %(model)s,
       u.embedding, u.ts_config,
       -- Title and headings weigh more than body text (weights A and B).
       setweight(to_tsvector(u.ts_config::regconfig, u.head), 'A')
       || setweight(to_tsvector(u.ts_config::regconfig, u.body), 'B'),
       u.kind
FROM unnest(
    %(kb_id)s::uuid[], %(translation_id)s::bigint[], %(article_key)s::text[], %(locale)s::text[],
    %(region)s::text[], %(chunk_hash)s::text[], %(position)s::int[], %(title)s::text[],
    %(heading_path)s::text[], %(text)s::text[], %(embedding)b::vector[], %(ts_config)s::text[],
    %(head)s::text[], %(body)s::text[], %(kind)s::text[]
) AS u(kb_id, translation_id, article_key, locale, region, chunk_hash, position, title, heading_path, text,
       embedding, ts_config, head, body, kind)
ON CONFLICT (chunk_hash, model_id) DO NOTHING
"""


def _embedded(items: list[_Pending], model_id: str) -> Iterator[tuple[list[_Pending], np.ndarray]]:
    """Yield batches with their vectors; the next batch is embedded in a thread meanwhile.

    The model computes in numpy (which releases the GIL) on one core while the caller inserts the
    previous batch, whose HNSW and GIN updates run in Postgres on the other.
    """
    provider = provider_for_model(model_id)
    batches = [items[start : start + EMBED_BATCH] for start in range(0, len(items), EMBED_BATCH)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as pool:
        futures = [pool.submit(_embed_batch, provider, batch) for batch in batches]
        try:
            for batch, future in zip(batches, futures, strict=True):
                yield batch, future.result()
        finally:
            for future in futures:
                future.cancel()  # after an error, do not embed what will not be stored


def _embed_batch(provider: EmbeddingProvider, batch: list[_Pending]) -> np.ndarray:
    """Vectors of a batch in its order: article text as passages, titles and phrasings as questions (they
    are matched question-to-question; a model trained with prefixes embeds the two differently)."""
    content = [i for i, p in enumerate(batch) if p.kind == ChunkKind.CONTENT]
    questions = [i for i, p in enumerate(batch) if p.kind != ChunkKind.CONTENT]
    vectors = np.zeros((len(batch), EMBEDDING_DIMENSIONS), dtype=np.float32)
    if content:
        vectors[content] = provider.embed([batch[i].embedding_input for i in content])
    if questions:
        vectors[questions] = provider.embed_questions([batch[i].embedding_input for i in questions])
    return vectors


def _embed_and_insert(todo: list[_Pending], *, tenant_id: int, alias: str) -> None:
    """Insert new chunks in bulk: one statement per batch, vectors sent in binary, tsvectors made in SQL."""
    by_model: dict[str, list[_Pending]] = {}
    for item in todo:
        by_model.setdefault(item.model_id, []).append(item)
    connection = connections[alias]
    connection.ensure_connection()
    # A server-side-binding cursor on Django's connection (so in its transaction) that sends vectors binary.
    raw = connection.connection
    with psycopg.Cursor(raw) as cursor:
        # Registered on this cursor only (its own adapters), so Django's connection is left as it is.
        register_vector_info(cursor, TypeInfo.fetch(raw, "vector"))  # type: ignore[arg-type]
        for model_id, items in by_model.items():
            for batch, vectors in _embedded(items, model_id):
                columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
                for item, vector in zip(batch, vectors, strict=True):
                    t = item.translation
                    columns["kb_id"].append(t.article.kb_id)
                    columns["translation_id"].append(t.pk)
                    columns["article_key"].append(t.article.key)
                    columns["locale"].append(t.locale)
                    columns["region"].append(t.region)
                    columns["chunk_hash"].append(item.hash)
                    columns["position"].append(item.position)
                    columns["title"].append(item.title)
                    content = item.kind == ChunkKind.CONTENT
                    path = item.heading_path if content else ()
                    columns["heading_path"].append("\x1f".join(path))
                    columns["text"].append(item.text)
                    columns["embedding"].append(vector)
                    columns["ts_config"].append(ts_config(t.locale))
                    # A title or phrasing chunk is its words alone (weight A: they are what customers type).
                    columns["head"].append(fts_text(" ".join([item.title, *path]) if content else item.text))
                    columns["body"].append(fts_text(item.text) if content else "")
                    columns["kind"].append(item.kind)
                cursor.execute(_INSERT_SQL, {"tenant": tenant_id, "model": model_id, **columns})


_COLUMNS = (
    "kb_id",
    "translation_id",
    "article_key",
    "locale",
    "region",
    "chunk_hash",
    "position",
    "title",
    "heading_path",
    "text",
    "embedding",
    "ts_config",
    "head",
    "body",
    "kind",
)


def _models_for(kb: KnowledgeBase) -> list[str]:
    return [m for m in dict.fromkeys([kb.embedding_model, kb.reindex_model]) if m]


def translations_index(*, translation_ids: Iterable[int], model_ids: list[str] | None = None) -> int:
    """Bring the chunks of these translations in line with their published text; return chunks embedded.

    For each knowledge base, vectors are made for the model search uses and, during a re-index, the new one.
    """
    ids = list(translation_ids)
    translations = list(
        Translation.objects.filter(pk__in=ids).select_related("article__kb", "published_revision")
    )
    gone = set(ids) - {t.pk for t in translations}
    pending: list[_Pending] = []
    keep: dict[int, set[tuple[str, str]]] = {}
    for translation in translations:
        revision = translation.published_revision
        keep[translation.pk] = set()
        if revision is None or translation.status == Status.ARCHIVED:
            continue  # not published (any more): its chunks are removed below
        kb = translation.article.kb
        pieces = search_pieces(title=revision.title, body=revision.body, phrasings=list(revision.phrasings))
        for model_id in model_ids or _models_for(kb):
            for kind, piece in pieces:
                digest = chunk_hash(
                    translation_id=translation.pk,
                    title=revision.title,
                    heading_path=piece.heading_path,
                    text=piece.text,
                )
                keep[translation.pk].add((digest, model_id))
                pending.append(
                    _Pending(
                        translation,
                        model_id,
                        digest,
                        piece.position,
                        piece.heading_path,
                        revision.title,
                        piece.text,
                        kind,
                    )
                )
    existing = set(Chunk.objects.filter(translation_id__in=list(keep)).values_list("chunk_hash", "model_id"))
    todo = [p for p in pending if (p.hash, p.model_id) not in existing]
    tenant = current_tenant()
    tenant_id = tenant.id
    with transaction.atomic(using=tenant.db_alias):
        stale = [
            pk
            for pk, translation_id, digest, model_id in Chunk.objects.filter(
                translation_id__in=list(keep)
            ).values_list("pk", "translation_id", "chunk_hash", "model_id")
            if (digest, model_id) not in keep[translation_id] and (model_ids is None or model_id in model_ids)
        ]
        if stale:
            Chunk.objects.filter(pk__in=stale).delete()
        if gone:
            Chunk.objects.filter(translation_id__in=gone).delete()
        if todo:
            _embed_and_insert(todo, tenant_id=tenant_id, alias=tenant.db_alias)
    knowledge_version_bump(tenant_id=tenant_id)  # cached chat answers from the old text are now stale
    return len(todo)


def kb_reindex(*, kb_id: str) -> int:
    """Build vectors of `kb.reindex_model` for every published text, then switch search over to them.

    Search filters on `kb.embedding_model`, so it keeps answering from the old vectors until the switch,
    which happens in one transaction together with dropping the old vectors.
    """
    kb = KnowledgeBase.objects.filter(pk=kb_id).first()
    if kb is None or not kb.reindex_model:
        return 0
    target = kb.reindex_model
    ids = list(
        Translation.objects.filter(article__kb=kb, published_revision__isnull=False)
        .exclude(status=Status.ARCHIVED)
        .values_list("pk", flat=True)
    )
    embedded = 0
    for start in range(0, len(ids), 200):
        embedded += translations_index(translation_ids=ids[start : start + 200], model_ids=[target])
    with transaction.atomic(using=current_tenant().db_alias):
        kb = KnowledgeBase.objects.select_for_update().get(pk=kb_id)
        if kb.reindex_model != target:
            return embedded  # another switch started meanwhile; it finishes the job
        # Texts published while this ran were indexed for both models (translations_index uses both).
        kb.embedding_model, kb.reindex_model = target, ""
        kb.save(update_fields=["embedding_model", "reindex_model", "updated_at"])
        Chunk.objects.filter(kb=kb).exclude(model_id=target).delete()
    knowledge_version_bump(tenant_id=current_tenant().id)  # search's cached list has the old model
    logger.info("knowledge base re-indexed", extra={"kb": str(kb.pk), "model": target, "chunks": embedded})
    return embedded
