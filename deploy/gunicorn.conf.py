"""Gunicorn settings for the web role (deploy/entrypoint.sh web).

Sized by environment so one image fits every node size: WEB_CONCURRENCY processes x GUNICORN_THREADS threads.
The multi-process Prometheus registry needs each dead worker's files marked, or its gauges linger.
"""

from __future__ import annotations

import os
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# Threads accept and answer quickly; the admission gate (apps/core/admission.py, HUB_ADMISSION_*) lets only
# HUB_ADMISSION_PERMITS of them (1) do a request's work at a time, up to HUB_ADMISSION_WAITING (6) wait in
# line, and refuses the rest at once with 503 + Retry-After. A chat turn with the offline providers is
# CPU-bound and Python threads share one core per process (the GIL): threads interleaving turns made every
# turn slow, so the permit, not the thread count, sets the work done at once. Threads must outnumber
# permits + waiting places, or the excess waits unseen in gunicorn's thread-pool queue. GUNICORN_THREADS=1
# gives the old sync workers (no early refusal: excess connections wait in the kernel's accept queue).
# Numbers: bench/README.md (bench_overload).
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
worker_class = "hub.gunicorn.DrainingThreadWorker" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# SIGTERM: stop accepting, finish the requests in flight for up to this long. Below Kubernetes'
# terminationGracePeriodSeconds (deploy/k8s/web.yaml: 40) minus its preStop sleep (10): 10 + 25 < 40.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
keepalive = 5  # gthread only: longer than nothing, shorter than a typical load balancer idle timeout (60 s)
# Recycle workers now and then so a slow leak never becomes an outage; jitter avoids all restarting at once.
max_requests = 2000
max_requests_jitter = 200
# /dev/shm, not the container's /tmp: the heartbeat file must not block on a slow or read-only disk.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - a RAM-backed mount private to the container
# Access log as JSON lines like the application logs; the path only (%(U)s), never the query string, which
# may carry personal data; the request id joins the line to the application's log lines.
accesslog = "-"
access_log_format = (
    '{"logger": "gunicorn.access", "method": "%(m)s", "path": "%(U)s", "status": "%(s)s", '
    '"duration_ms": %(M)s, "bytes": "%(B)s", "request_id": "%({x-request-id}o)s"}'
)
errorlog = "-"
# Both logs blank the secrets that password-reset, invitation and Salesforce webhook URLs carry in their path.
logger_class = "hub.gunicorn.RedactingLogger"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()


def child_exit(server: Any, worker: Any) -> None:
    """Mark a dead worker's metric files so its live gauges stop counting (prometheus_client multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """Load the embedding model before taking requests (see hub/gunicorn.py)."""
    from hub.gunicorn import post_worker_init as warm_up

    warm_up(worker)
