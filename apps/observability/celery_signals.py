"""Celery signal handlers: task durations and states, and the request id and tenant carried into tasks.

`before_task_publish` puts the publisher's request id and tenant into the message headers; `task_prerun`
restores them into the logging context, so a task's log lines carry the id of the request that queued it
(a task queued by beat or another task without one uses its own task id). Tasks the task queues pass the
same id on. Connected in ObservabilityConfig.ready, so web processes (publishers) and workers both have them.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from celery import signals
from django.conf import settings
from prometheus_client import multiprocess

from apps.core.context import current_tenant_or_none
from apps.observability import metrics
from apps.observability.logging import request_id_var, tenant_slug_var

REQUEST_ID_HEADER = "hub_request_id"
TENANT_HEADER = "hub_tenant"
_STATES = {"SUCCESS": "success", "RETRY": "retry", "IGNORED": "success"}


def _header(request: Any, name: str) -> str | None:
    """Read one of our headers from a task's request; anything that is not a short token is ignored."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    if value is None:
        return None
    return metrics.token(value, default="") or None


@signals.before_task_publish.connect(dispatch_uid="hub-observability-publish")
def add_log_context(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    request_id = request_id_var.get()
    tenant = current_tenant_or_none()
    slug = tenant.slug if tenant is not None else tenant_slug_var.get()
    if request_id:
        headers.setdefault(REQUEST_ID_HEADER, request_id)
    if slug:
        headers.setdefault(TENANT_HEADER, slug)


@signals.task_prerun.connect(dispatch_uid="hub-observability-prerun")
def start_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None:
        return
    request = task.request
    request_id = _header(request, REQUEST_ID_HEADER) or task_id
    request.hub_log_tokens = (
        request_id_var.set(request_id),
        tenant_slug_var.set(_header(request, TENANT_HEADER)),
    )
    request.hub_started = time.perf_counter()


@signals.task_postrun.connect(dispatch_uid="hub-observability-postrun")
def finish_task(task: Any = None, state: str | None = None, **_: Any) -> None:
    if task is None:
        return
    request = task.request
    started = getattr(request, "hub_started", None)
    if started is not None and settings.HUB_METRICS_ENABLED:
        metrics.observe_celery_task(
            task=task.name, state=_STATES.get(state or "", "failure"), seconds=time.perf_counter() - started
        )
    tokens = getattr(request, "hub_log_tokens", None)
    if tokens is not None:
        request.hub_log_tokens = None
        for var, token in zip((request_id_var, tenant_slug_var), tokens, strict=True):
            try:
                var.reset(token)
            except ValueError:  # set in another context: clear instead
                var.set(None)


@signals.worker_process_shutdown.connect(dispatch_uid="hub-observability-process-shutdown")
def forget_process(**_: Any) -> None:
    """Drop this prefork child's live gauges; its counters and histograms stay in the merged totals."""
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(os.getpid(), str(settings.HUB_METRICS_DIR))


@signals.worker_ready.connect(dispatch_uid="hub-observability-exporter")
def start_exporter(**_: Any) -> None:
    """Serve this worker's metrics when HUB_METRICS_WORKER_PORT is set (see exporter.py)."""
    from apps.observability.exporter import start_worker_exporter

    start_worker_exporter()
