"""A Celery worker keeps its database connections from task to task (Celery's Django fixup closed them all
around every task: a new connection, authentication and server process per platform message)."""

from __future__ import annotations

import time

import pytest
from celery import signals
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from apps.chat.services.channel_inbound import CHANNEL_INBOUND_TASK
from hub.celery import app


def _run_task_hooks(fixup: DjangoWorkerFixup) -> None:
    """What a worker does around one task: the fixup's hooks and the task signals."""
    task = app.tasks[CHANNEL_INBOUND_TASK]
    fixup.on_task_prerun(sender=task)
    sent = {"sender": task, "task_id": "t", "task": task, "args": (), "kwargs": {}}
    signals.task_prerun.send(**sent)
    signals.task_postrun.send(**sent, retval=None, state="SUCCESS")
    fixup.on_task_postrun(sender=task)


def _backend_pid() -> int:
    """The PostgreSQL server process of the connection (a new one for every new connection)."""
    connection.ensure_connection()
    return int(connection.connection.info.backend_pid)


@pytest.mark.django_db(transaction=True)
def test_tasks_reuse_the_connection_until_its_max_age() -> None:
    fixup = DjangoWorkerFixup(app)
    backend = _backend_pid()
    for _ in range(5):
        _run_task_hooks(fixup)
        assert _backend_pid() == backend
    connection.close_at = time.monotonic() - 1  # CONN_MAX_AGE reached
    _run_task_hooks(fixup)
    assert connection.connection is None
    assert _backend_pid() != backend
