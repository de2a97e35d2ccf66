from typing import Any

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        from celery.signals import worker_init, worker_process_init

        worker_process_init.connect(_task_process, weak=False)  # prefork children
        worker_init.connect(_task_process, weak=False)  # solo and thread pools run tasks in the main process


def _task_process(**kwargs: Any) -> None:
    """Celery worker processes run with the task statement budget (apps/core/deadlines.py)."""
    from django.db import connections

    from apps.core.deadlines import process_class_set

    process_class_set("task")
    connections.close_all()  # any connection opened before now carries another budget
