"""Admission under overload: a per-process work permit and a small waiting room, in front of Django.

A chat turn with the offline providers is CPU-bound and Python threads share one core per process (the GIL):
several turns interleaving in one process all finish late. So each web process does the work of at most
HUB_ADMISSION_PERMITS requests at a time (1 by default) while gunicorn's gthread threads keep accepting
connections. A request that finds the permit taken joins a bounded, first-come-first-served waiting room
(HUB_ADMISSION_WAITING places); when the room is full it is refused at once (503, `Retry-After`, the API's
JSON error shape), and a waiting request that does not get the permit within HUB_ADMISSION_MAX_WAIT_SECONDS
is refused too. Admitted requests therefore wait for at most a few others, whatever the load; refusals cost
a lock and a small write, not a turn. Without this, excess connections wait in the kernel's accept queue and
every request gets slower.

The permit is local to the process on purpose: it measures this process's capacity, nothing shared (shared
limits such as the chat rate limits live in Redis).

Never gated: liveness, readiness and metrics (a load balancer and Prometheus must hear back from a busy
process), and static files. Readiness answers 503 at once while the drain file (HUB_DRAIN_FILE) exists: the
Kubernetes preStop hook creates it, so load balancers stop sending before gunicorn gets SIGTERM.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation.trans_real import get_supported_language_variant, parse_accept_lang_header

from apps.observability import metrics

__all__ = ["AdmissionGate", "WorkPermit", "admission_wrap"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Route label of refused requests in hub_http_request_duration_seconds (they never reach Django's router).
REFUSED_ROUTE = "admission:refused"
_UNGATED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class WorkPermit:
    """`permits` holders at a time; up to `waiting` others queue in arrival order for a bounded time."""

    def __init__(self, *, permits: int, waiting: int) -> None:
        self._lock = threading.Lock()
        self._free = permits
        self._waiting = waiting
        self._queue: deque[threading.Event] = deque()

    def acquire(self, *, timeout: float) -> bool:
        """Take a permit now, or wait in line for one up to `timeout`; False when refused."""
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            if len(self._queue) >= self._waiting:
                return False
            turn = threading.Event()
            self._queue.append(turn)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.is_set():  # handed over just as the wait timed out: it is ours
                return True
            self._queue.remove(turn)
            return False

    def release(self) -> None:
        """Hand the permit to the first in line, or free it."""
        with self._lock:
            if self._queue:
                self._queue.popleft().set()
            else:
                self._free += 1

    def waiting(self) -> int:
        return len(self._queue)


class _Released:
    """The response iterable; the permit is released when the server closes it (after the body is sent)."""

    def __init__(self, result: Iterable[bytes], release: Callable[[], None]) -> None:
        self._result = result
        self._release = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            release, self._release = self._release, _noop
            release()


def _noop() -> None:
    return None


def _language(environ: dict[str, Any]) -> str:
    for code, _quality in parse_accept_lang_header(environ.get("HTTP_ACCEPT_LANGUAGE", "")):
        if code == "*":
            break
        try:
            return get_supported_language_variant(code)
        except LookupError:
            continue
    return str(settings.LANGUAGE_CODE)


class AdmissionGate:
    """WSGI middleware: admit a request to the application only with a work permit (see module docstring)."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        permits: int,
        waiting: int,
        max_wait: float,
        retry_after: int,
        drain_file: str = "",
        static_prefix: str = "/static/",
    ) -> None:
        self.app = app
        self.permit = WorkPermit(permits=permits, waiting=waiting)
        self.max_wait = max_wait
        self.retry_after = retry_after
        self.drain_file = drain_file
        self.static_prefix = static_prefix

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in _UNGATED_PATHS or path.startswith(self.static_prefix):
            if path == "/readyz" and self.drain_file and os.path.exists(self.drain_file):
                return self._draining(start_response)
            return self.app(environ, start_response)
        started = time.perf_counter()
        if not self.permit.acquire(timeout=self.max_wait):
            return self._refuse(environ, start_response, started)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self.permit.release()
            raise
        return _Released(result, self.permit.release)

    def _draining(self, start_response: StartResponse) -> list[bytes]:
        body = b'{"status": "unavailable"}'
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    def _refuse(self, environ: dict[str, Any], start_response: StartResponse, started: float) -> list[bytes]:
        """503 with Retry-After, JSON in the API's error shape (a small page for a browser)."""
        with translation.override(_language(environ)):
            message = _("The service is busy. Please try again in %(seconds)d seconds.") % {
                "seconds": self.retry_after
            }
        wants_html = not environ.get("PATH_INFO", "").startswith("/api/") and "text/html" in environ.get(
            "HTTP_ACCEPT", ""
        )
        if wants_html:
            body = (
                '<!doctype html><meta charset="utf-8"><title>503</title><p>' + escape(message) + "</p>"
            ).encode()
            content_type = "text/html; charset=utf-8"
        else:
            body = json.dumps({"detail": message}, ensure_ascii=False).encode()
            content_type = "application/json"
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Retry-After", str(self.retry_after)),
                ("Cache-Control", "no-store"),
            ],
        )
        if metrics.enabled():
            metrics.observe_http_request(
                route=REFUSED_ROUTE,
                method=environ.get("REQUEST_METHOD", ""),
                status=503,
                seconds=time.perf_counter() - started,
            )
        return [body]


def admission_wrap(app: WSGIApp) -> WSGIApp:
    """Put the admission gate in front of the WSGI application, sized by the HUB_ADMISSION_* settings."""
    return AdmissionGate(
        app,
        permits=settings.HUB_ADMISSION_PERMITS,
        waiting=settings.HUB_ADMISSION_WAITING,
        max_wait=settings.HUB_ADMISSION_MAX_WAIT_SECONDS,
        retry_after=settings.HUB_ADMISSION_RETRY_AFTER_SECONDS,
        drain_file=settings.HUB_DRAIN_FILE,
        static_prefix="/" + str(settings.STATIC_URL).lstrip("/"),
    )
