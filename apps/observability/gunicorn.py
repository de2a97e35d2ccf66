"""gunicorn hooks for multi-process metrics: `gunicorn --config python:apps.observability.gunicorn ...`.

Each worker writes its own file in PROMETHEUS_MULTIPROC_DIR; when a worker exits its live gauges are
dropped (counters and histograms stay in the merged totals, as Prometheus expects of counters).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(worker.pid, path)
