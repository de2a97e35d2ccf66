"""gunicorn hooks of the web role: `gunicorn --config python:hub.gunicorn ...` (deploy/gunicorn.conf.py too).

- `child_exit`: drop a dead worker's live metric gauges (multi-process Prometheus).
- `post_worker_init`: load the embedding model before the worker takes requests, so the first chat users of
  a fresh worker do not wait for it (about 2 s per worker otherwise).
- `post_worker_init` also shortens the interpreter's thread switch interval in threaded (gthread) workers, so
  the threads that accept, refuse or answer readiness get the GIL within 1 ms of asking instead of 5 ms
  while the admitted request computes (apps/core/admission.py; bench/README.md, bench_overload).
- `logger_class`: gunicorn's access and error logs with the secrets of password-reset, invitation and
  webhook URLs blanked (apps/observability/redact.py), whatever the access-log format prints.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from gunicorn.glogging import Logger

from apps.observability.gunicorn import child_exit
from apps.observability.redact import SecretPathFilter

__all__ = ["RedactingLogger", "child_exit", "logger_class", "post_worker_init"]


class RedactingLogger(Logger):
    """gunicorn's logger whose access and error lines never carry a secret from a URL path."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, SecretPathFilter) for f in log.filters):  # setup runs again on reopen
                log.addFilter(SecretPathFilter())


logger_class = RedactingLogger


#: Seconds a thread may hold the GIL while another waits for it, in threaded workers (Python's default: 5 ms).
THREADED_SWITCH_INTERVAL = 0.001


def post_worker_init(worker: Any) -> None:
    if getattr(getattr(worker, "cfg", None), "threads", 1) > 1:
        sys.setswitchinterval(THREADED_SWITCH_INTERVAL)
    try:
        from apps.knowledge.embeddings import get_provider

        get_provider().embed_query("warm-up")
    except Exception:  # a provider that cannot load now will say so on the first search, with context
        logging.getLogger(__name__).warning("embedding model warm-up failed", exc_info=True)
