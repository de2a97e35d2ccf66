"""Celery tasks of the knowledge app: thin wrappers that take ids and call the indexing and import services.

Services queue them by name (apps/knowledge/dispatch.py) and never import this module, so the names are fixed.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from apps.core.tasks import TenantTask
from apps.knowledge.dispatch import (
    IMPORT_CONNECTION_TASK,
    INDEX_TASK,
    REINDEX_TASK,
    XLIFF_IMPORT_TASK,
    XLIFF_SWEEP_TASK,
)

logger = logging.getLogger(__name__)


@shared_task(name=INDEX_TASK, base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def knowledge_index_task(*, tenant_id: int, translation_ids: list[int]) -> int:
    """Index (or un-index) these translations; idempotent, so a redelivered message is harmless."""
    from apps.knowledge.indexing import translations_index

    return translations_index(translation_ids=translation_ids)


@shared_task(name=REINDEX_TASK, base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def knowledge_reindex_task(*, tenant_id: int, kb_id: str) -> int:
    """Re-embed a knowledge base with a new model in the background, then switch search to it."""
    from apps.knowledge.indexing import kb_reindex

    return kb_reindex(kb_id=kb_id)


@shared_task(
    name=IMPORT_CONNECTION_TASK,
    base=TenantTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def knowledge_import_connection_task(
    self: Any,
    *,
    tenant_id: int,
    kb_id: str,
    connection_id: str,
    actor_id: int | None = None,
    publish: bool = False,
) -> dict[str, Any] | None:
    """Import a connection's knowledge articles; idempotent, so a redelivered message is harmless.

    A transient vendor failure (nothing was imported) is retried with backoff, honouring Retry-After,
    up to HUB_SYNC_MAX_RETRIES; a permanent one (credentials, configuration, policy) is logged and ends.
    """
    from apps.core.errors import HubError
    from apps.integrations.retry import sync_retry_delay
    from apps.knowledge.importing import KnowledgeImportFailed, kb_import_connection_run

    try:
        result = kb_import_connection_run(
            kb_id=kb_id, connection_id=connection_id, actor_id=actor_id, publish=publish
        )
    except KnowledgeImportFailed as exc:
        retries = self.request.retries
        if exc.transient and retries < settings.HUB_SYNC_MAX_RETRIES:
            countdown = sync_retry_delay(retries=retries, retry_after=exc.retry_after)
            raise self.retry(countdown=countdown, exc=exc) from None
        logger.warning("knowledge import failed", extra={"connection_id": connection_id, "error": str(exc)})
        return {"error": str(exc)}
    except HubError as exc:  # refused by policy, disabled or unsupported connection: retrying cannot help
        logger.warning("knowledge import refused", extra={"connection_id": connection_id, "error": str(exc)})
        return {"error": str(exc)}
    return None if result is None else result.as_dict()


@shared_task(name=XLIFF_IMPORT_TASK, base=TenantTask, acks_late=True, reject_on_worker_lost=True)
def knowledge_xliff_import_task(*, tenant_id: int, import_id: int) -> str | None:
    """Apply an uploaded XLIFF file; a redelivered message finds the import running or done: a no-op."""
    from apps.knowledge.xliff import xliff_import_run

    job = xliff_import_run(import_id=import_id)
    return None if job is None else str(job.status)


@shared_task(name=XLIFF_SWEEP_TASK, acks_late=True, reject_on_worker_lost=True)
def knowledge_xliff_sweep_task() -> list[int]:
    """By beat: publish again the XLIFF imports whose task was lost; purge those past their retention."""
    from apps.knowledge.xliff import xliff_imports_sweep

    return list(xliff_imports_sweep())
