"""Structured logs: a task's lines carry the request id and tenant of the request that queued it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from apps.core.context import tenant_context
from apps.integrations.tasks import sync_stream_task
from apps.observability.logging import request_id_var
from apps.tenants.models import Tenant
from tests.fixtures.metrics import scrape, value
from tests.fixtures.processes import Worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASK = "apps.integrations.tasks.sync_stream_task"


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


def test_a_tasks_log_lines_carry_the_request_id_and_tenant_that_queued_it(
    tenant_a: Tenant, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = Worker(log, "", queues="sync", name="obs")
    worker.start()
    before = scrape()
    try:
        token = request_id_var.set("req-obs-0123456789")
        try:
            with tenant_context(tenant_a):
                # A malformed id makes the task fail, and Celery log the failure from inside the task.
                sync_stream_task.apply_async(
                    kwargs={
                        "tenant_id": tenant_a.id,
                        "connection_id": "jane.doe@example.com",
                        "stream": "contacts",
                        "trigger": "manual",
                    }
                )
        finally:
            request_id_var.reset(token)
        deadline = time.monotonic() + 90
        while not (lines := [line for line in _json_lines(log) if TASK in json.dumps(line)]):
            assert time.monotonic() < deadline, f"no task log line; see {log}"
            time.sleep(0.5)
        after = scrape()
    finally:
        worker.stop()
        connections.close_all()
    failure = lines[0]
    assert failure["level"] == "ERROR"
    assert failure["request_id"] == "req-obs-0123456789"
    assert failure["tenant"] == "tenant-a"
    text = log.read_text()
    assert "jane.doe@example.com" not in text  # the PII filter stays on in workers
    count = "hub_celery_task_duration_seconds_count"
    labels = {"task": TASK, "state": "failure"}
    failures = value(after, count, **labels) - value(before, count, **labels)
    assert failures == 1  # written by the worker's child process, seen by this process's scrape


def test_a_worker_serves_its_own_metrics_when_given_a_port(tenant_a: Tenant, tmp_path: Path) -> None:
    import requests

    from apps.core.embedded import free_port

    port = free_port()
    log = tmp_path / "worker.log"
    worker = Worker(log, "", queues="default", name="exp", env={"HUB_METRICS_WORKER_PORT": str(port)})
    worker.start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                response = requests.get(url, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, f"the exporter never answered; see {log}"
                time.sleep(0.5)
        assert requests.get(url.replace("/metrics", "/other"), timeout=5).status_code == 404
    finally:
        worker.stop()
        connections.close_all()
    assert response.status_code == 200
    assert "# TYPE hub_celery_task_duration_seconds histogram" in response.text
    assert "hub_outbox_depth" not in response.text  # the web processes serve the scrape-time gauges
