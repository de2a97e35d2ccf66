"""gunicorn hooks of the web role: `gunicorn --config python:hub.gunicorn ...` (deploy/gunicorn.conf.py too).

- `child_exit`: drop a dead worker's live metric gauges (multi-process Prometheus).
- `post_worker_init`: load the embedding model before the worker takes requests, so the first chat users of
  a fresh worker do not wait for it (about 2 s per worker otherwise).
"""

from __future__ import annotations

import logging
from typing import Any

from apps.observability.gunicorn import child_exit

__all__ = ["child_exit", "post_worker_init"]


def post_worker_init(worker: Any) -> None:
    try:
        from apps.knowledge.embeddings import get_provider

        get_provider().embed_query("warm-up")
    except Exception:  # a provider that cannot load now will say so on the first search, with context
        logging.getLogger(__name__).warning("embedding model warm-up failed", exc_info=True)
