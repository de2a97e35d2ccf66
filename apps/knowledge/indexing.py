"""Indexing published text: chunk, embed what is new, store vectors and full-text entries.

Runs in Celery (see tasks.py). Idempotent: chunks are keyed by a hash of their content, so a redelivered
task or an unchanged re-publish embeds nothing; text that is no longer published leaves the index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.postgres.search import SearchVector
from django.db import transaction
from django.db.models import Value
from django.db.models.expressions import Combinable

from apps.core.context import current_tenant
from apps.knowledge.chunking import (
    chunk_hash,
    chunk_markdown,
    embedding_input,
    fts_text,
    ts_config,
)
from apps.knowledge.embeddings import provider_for_model
from apps.knowledge.models import Chunk, KnowledgeBase, Status, Translation
from apps.knowledge.version import knowledge_version_bump

logger = logging.getLogger(__name__)
EMBED_BATCH = 64


@dataclass
class _Pending:
    translation: Translation
    model_id: str
    hash: str
    position: int
    heading_path: tuple[str, ...]
    title: str
    text: str


def _tsvector(*, config: str, title: str, heading_path: tuple[str, ...], text: str) -> Combinable:
    """Title and headings weigh more than body text (weights A and B)."""
    head = fts_text(" ".join([title, *heading_path]))
    return SearchVector(Value(head), config=Value(config), weight="A") + SearchVector(
        Value(fts_text(text)), config=Value(config), weight="B"
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
        for model_id in model_ids or _models_for(kb):
            for piece in chunk_markdown(revision.body or revision.title):
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
                    )
                )
    existing = set(Chunk.objects.filter(translation_id__in=list(keep)).values_list("chunk_hash", "model_id"))
    todo = [p for p in pending if (p.hash, p.model_id) not in existing]
    rows: list[Chunk] = []
    by_model: dict[str, list[_Pending]] = {}
    for item in todo:
        by_model.setdefault(item.model_id, []).append(item)
    for model_id, items in by_model.items():
        provider = provider_for_model(model_id)
        for start in range(0, len(items), EMBED_BATCH):
            batch = items[start : start + EMBED_BATCH]
            vectors = provider.embed(
                [embedding_input(title=p.title, heading_path=p.heading_path, text=p.text) for p in batch]
            )
            for item, vector in zip(batch, vectors, strict=True):
                t = item.translation
                config = ts_config(t.locale)
                rows.append(
                    Chunk(
                        kb_id=t.article.kb_id,
                        translation=t,
                        article_key=t.article.key,
                        locale=t.locale,
                        region=t.region,
                        status=Status.PUBLISHED,
                        chunk_hash=item.hash,
                        position=item.position,
                        title=item.title,
                        heading_path=list(item.heading_path),
                        text=item.text,
                        model_id=model_id,
                        embedding=vector,
                        ts_config=config,
                        tsv=_tsvector(
                            config=config, title=item.title, heading_path=item.heading_path, text=item.text
                        ),
                    )
                )
    tenant_id = current_tenant().id
    for row in rows:
        row.tenant_id = tenant_id
    with transaction.atomic(using=current_tenant().db_alias):
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
        Chunk.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    knowledge_version_bump(tenant_id=tenant_id)  # cached chat answers from the old text are now stale
    return len(rows)


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
    logger.info("knowledge base re-indexed", extra={"kb": str(kb.pk), "model": target, "chunks": embedded})
    return embedded
