"""The Celery application; tasks live in apps/*/tasks.py and use shared_task.

Also the worker's own database budget: every statement a task runs is bounded by
HUB_DB_STATEMENT_TIMEOUT_TASK_MS.
The beat scheduler is hub/beat.py.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _task_statement_timeout(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Give every database connection of a worker the task budget (web requests have their own)."""
    from django.conf import settings

    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [
            f"{int(settings.HUB_DB_STATEMENT_TIMEOUT_TASK_MS)}ms"
        ])  # fmt: skip


@worker_init.connect
def _worker_database_budget(**kwargs: Any) -> None:
    """Connect the budget before the pool forks: every child (and a solo pool) opens connections with it."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    connection_created.connect(_task_statement_timeout, dispatch_uid="hub-task-statement-timeout")
    for connection in connections.all(initialized_only=True):
        connection.close()  # opened before the signal was connected: reopen with the budget
