"""`make run` (manage.py serve) starts processes that do all the work: every Celery queue is consumed."""

from __future__ import annotations

from django.conf import settings

from apps.core.management.commands.serve import process_commands, worker_queues


def test_the_local_worker_consumes_every_routed_queue() -> None:
    worker = process_commands(port=8000)["worker"]
    queues = set(worker[worker.index("-Q") + 1].split(","))
    assert queues == {"default", "sync", "outbox", "siem"}
    assert {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} <= queues
    assert worker_queues() == sorted(queues)


def test_web_uses_the_hub_gunicorn_hooks_on_loopback() -> None:
    web = process_commands(port=8123)["web"]
    assert web[web.index("--bind") + 1] == "127.0.0.1:8123"
    assert web[web.index("--config") + 1] == "python:hub.gunicorn"
