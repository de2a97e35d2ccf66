"""Celery tasks of the knowledge app: thin wrappers that take ids and call the indexing services."""

from __future__ import annotations

from celery import shared_task

from apps.core.tasks import TenantTask


@shared_task(base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def knowledge_index_task(*, tenant_id: int, translation_ids: list[int]) -> int:
    """Index (or un-index) these translations; idempotent, so a redelivered message is harmless."""
    from apps.knowledge.indexing import translations_index

    return translations_index(translation_ids=translation_ids)


@shared_task(base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def knowledge_reindex_task(*, tenant_id: int, kb_id: str) -> int:
    """Re-embed a knowledge base with a new model in the background, then switch search to it."""
    from apps.knowledge.indexing import kb_reindex

    return kb_reindex(kb_id=kb_id)
