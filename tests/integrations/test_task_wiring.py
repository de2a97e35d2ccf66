"""The integrations tasks keep their names, every setting that names a task names a real one, and services can
queue tasks by name in any process (they never import tasks.py: services/dispatch.py)."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

from celery import current_app
from django.conf import settings

from apps.integrations import tasks
from apps.integrations.services import dispatch

ROOT = Path(__file__).resolve().parents[2]
#: What messages already waiting in a deployed broker, the routes, the time limits and the beat schedule say.
TASK_NAMES = {
    "apps.integrations.tasks.sync_stream_task",
    "apps.integrations.tasks.sync_due",
    "apps.integrations.tasks.sync_requeue_stale_task",
    "apps.integrations.tasks.outbox_relay_task",
    "apps.integrations.tasks.outbox_relay_due",
}


def _app_tasks() -> set[str]:
    return {name for name in current_app.tasks if name.startswith("apps.integrations.")}


def test_task_names_never_change() -> None:
    assert _app_tasks() == TASK_NAMES
    assert {dispatch.SYNC_STREAM_TASK, dispatch.OUTBOX_RELAY_TASK} <= TASK_NAMES
    assert tasks.sync_stream_task.name == dispatch.SYNC_STREAM_TASK
    assert tasks.outbox_relay_task.name == dispatch.OUTBOX_RELAY_TASK


def test_every_task_named_in_settings_exists() -> None:
    """A route, beat entry or time limit that names no task (a renamed task, an unused queue) is a mistake."""
    named = [
        *settings.CELERY_TASK_ROUTES,
        *(entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()),
        *settings.CELERY_TASK_ANNOTATIONS,
    ]
    patterns = [name for name in named if name.startswith("apps.integrations.")]
    assert len(patterns) >= 6
    assert [p for p in patterns if not fnmatch.filter(_app_tasks(), p)] == []


def test_a_fresh_process_can_queue_the_tasks_by_name() -> None:
    """A web process imports no task module by itself: the app config registers them for dispatch."""
    script = (
        "import django; django.setup(); "
        "from apps.integrations.services.dispatch import OUTBOX_RELAY_TASK, SYNC_STREAM_TASK, _task; "
        "print(_task(SYNC_STREAM_TASK).name, _task(OUTBOX_RELAY_TASK).name)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [dispatch.SYNC_STREAM_TASK, dispatch.OUTBOX_RELAY_TASK]
