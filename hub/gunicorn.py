"""gunicorn hooks of the web role: `gunicorn --config python:hub.gunicorn ...` (deploy/gunicorn.conf.py too).

- `child_exit`: drop a dead worker's live metric gauges (multi-process Prometheus).
- `post_worker_init`: load the embedding model and embed the intent and off-topic examples before the worker
  takes requests, so the first chat users of a fresh worker do not wait for them (about 2 s per worker
  otherwise).
- `post_worker_init` also shortens the interpreter's thread switch interval in threaded (gthread) workers, so
  the threads that accept, refuse or answer readiness get the GIL within 1 ms of asking instead of 5 ms
  while the admitted request computes (apps/core/admission.py; bench/README.md, bench_overload).
- `DrainingThreadWorker`: gthread, except that a worker told to stop (SIGTERM, max_requests) closes its copy
  of the listening sockets at once instead of after its in-flight requests: gunicorn's own worker keeps them
  open while it drains, so new connections queue unanswered for up to graceful_timeout and are then reset;
  closed, they are refused at once and a client or load balancer tries another instance. And a worker
  whose admission pool is full lets the other workers accept a new connection first (5 ms), so bursts of
  new connections spread over the processes with room instead of being refused by the busiest.
- `logger_class`: gunicorn's access and error logs with the secrets of password-reset, invitation and
  webhook URLs blanked (apps/observability/redact.py), whatever the access-log format prints.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

from apps.observability.gunicorn import child_exit
from apps.observability.redact import SecretPathFilter

__all__ = ["DrainingThreadWorker", "RedactingLogger", "child_exit", "logger_class", "post_worker_init"]


class RedactingLogger(Logger):
    """gunicorn's logger whose access and error lines never carry a secret from a URL path."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, SecretPathFilter) for f in log.filters):  # setup runs again on reopen
                log.addFilter(SecretPathFilter())


logger_class = RedactingLogger


class DrainingThreadWorker(ThreadWorker):
    """A gthread worker that stops listening as soon as it starts draining (see the module docstring).

    The listening socket lives on while another process holds it: the master during a worker replacement
    (HUP, max_requests), so only a whole server's shutdown makes new connections be refused.
    """

    def accept(self, listener: Any) -> None:
        """Take a new connection; a process whose work pool is full first lets the others take it.

        Every worker is woken for a new connection; the first to call accept() gets it. A process with no
        room would only refuse the request, so it waits a moment: one with room takes the connection, and
        when every process is full the connection is still taken (and the request refused) a few
        milliseconds later.
        """
        pool = getattr(self.wsgi, "pool", None)
        # Connections with a request in progress, accepted ones not yet in the pool included (idle
        # kept-alive ones excluded): a burst of connections is accepted before any request is read.
        active = self.nr_conns - len(self.keepalived_conns)
        if pool is not None and active >= pool.capacity:
            time.sleep(ACCEPT_YIELD_SECONDS)
        super().accept(listener)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.close()


#: How long a process with a full work pool lets the other processes take a new connection first.
ACCEPT_YIELD_SECONDS = 0.005
#: Seconds a thread may hold the GIL while another waits for it, in threaded workers (Python's default: 5 ms).
THREADED_SWITCH_INTERVAL = 0.001


def post_worker_init(worker: Any) -> None:
    if getattr(getattr(worker, "cfg", None), "threads", 1) > 1:
        sys.setswitchinterval(THREADED_SWITCH_INTERVAL)
    try:
        from apps.chat.services.intents import warm
        from apps.knowledge.embeddings import get_provider

        provider = get_provider()
        provider.embed_query("warm-up")
        warm(provider)
    except Exception:  # a provider that cannot load now will say so on the first search, with context
        logging.getLogger(__name__).warning("embedding model warm-up failed", exc_info=True)
