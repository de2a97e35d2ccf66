"""Celery entry point: `celery -A celery_worker worker` / `beat`.

Sets up Django before the worker imports tasks, so tasks can use the ORM at import time safely.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
django.setup()

from hub.celery import app  # noqa: E402

__all__ = ["app"]
