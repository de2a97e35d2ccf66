"""The Celery application; tasks live in apps/*/tasks.py and use shared_task.

A worker's database budget (HUB_DB_STATEMENT_TIMEOUT_TASK_MS) is set in apps/core/apps.py.
The beat scheduler is hub/beat.py.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect(dispatch_uid="hub-db-connections-prerun")
@signals.task_postrun.connect(dispatch_uid="hub-db-connections-postrun")
def recycle_db_connections(task: Any = None, **_: Any) -> None:
    """Around each task, what Django does around each request: close the connections past CONN_MAX_AGE or
    found broken (CONN_HEALTH_CHECKS), keep the others. Celery's Django fixup would close them all, before
    and after every task, but for CELERY_DB_REUSE_MAX (settings, "finish17")."""
    if task is not None and getattr(task.request, "is_eager", False):
        return  # an eager task runs inside its caller's transaction
    from django.db import close_old_connections

    close_old_connections()
