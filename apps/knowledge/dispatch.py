"""Queueing the knowledge tasks by name, so services and the import never import tasks.py (tasks call them).

The names are the tasks' registered names (`name=` in tasks.py); messages already waiting in a deployed
broker carry them, so they never change. KnowledgeConfig.ready() imports tasks.py in every process, so the
task object comes from Celery's registry and is published with its own options and routes.
"""

from __future__ import annotations

from celery import Task, current_app

INDEX_TASK = "apps.knowledge.tasks.knowledge_index_task"
REINDEX_TASK = "apps.knowledge.tasks.knowledge_reindex_task"
IMPORT_CONNECTION_TASK = "apps.knowledge.tasks.knowledge_import_connection_task"
XLIFF_IMPORT_TASK = "apps.knowledge.tasks.knowledge_xliff_import_task"
XLIFF_SWEEP_TASK = "apps.knowledge.tasks.knowledge_xliff_sweep_task"


def knowledge_task(name: str) -> Task:
    """The registered task called `name` (one of the names above)."""
    return current_app.tasks[name]
