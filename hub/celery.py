"""The Celery application; tasks live in apps/*/tasks.py and use shared_task.

A worker's database budget (HUB_DB_STATEMENT_TIMEOUT_TASK_MS) is set in apps/core/apps.py.
The beat scheduler is hub/beat.py.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
