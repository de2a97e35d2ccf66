"""Gunicorn settings for the web role (deploy/entrypoint.sh web).

Sized by environment so one image fits every node size: WEB_CONCURRENCY processes x GUNICORN_THREADS threads.
The multi-process Prometheus registry needs each dead worker's files marked, or its gauges linger.
"""

from __future__ import annotations

import os
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# One request per process by default: a chat turn with the offline providers is CPU-bound, and Python threads
# share one core per process (the GIL), so under load threads interleave unevenly and the slowest turns wait
# longest; single-threaded workers take requests from the kernel's accept queue in arrival order
# (bench_chat, 32 clients: p99 125-148 ms sync vs 249-272 ms with 4 threads, similar throughput). With a
# remote LLM provider turns mostly wait on it: then raise GUNICORN_THREADS, which switches to gthread.
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 25  # below Kubernetes' default 30 s termination grace period
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
