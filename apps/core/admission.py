"""Admission under overload: a few work threads per process and a small waiting room, in front of Django.

A chat turn with the offline providers is CPU-bound and Python threads share one core per process (the GIL):
several turns interleaving in one process all finish late. So each web process runs the application on
HUB_ADMISSION_PERMITS long-lived work threads (1 by default) while gunicorn's gthread threads keep accepting
connections. A request that finds every work thread busy joins a bounded, first-come-first-served waiting
room (HUB_ADMISSION_WAITING places); when the room is full, or the requests ahead of it would take longer
than HUB_ADMISSION_MAX_WAIT_SECONDS by the recent average, it is refused at once (503, `Retry-After`, the
API's JSON error shape), and a waiting request that has not started within HUB_ADMISSION_MAX_WAIT_SECONDS
is refused too (it never reached Django, so a retry with the same Idempotency-Key is its first delivery).
Admitted requests therefore wait for at most a few others, whatever the load; refusals cost a lock and a
small write, not a turn. Without this, excess connections wait in the kernel's accept queue and every
request gets slower. The same work threads run every request, so a process keeps HUB_ADMISSION_PERMITS
database connections per alias (Django's are per thread), not one per gunicorn thread.

Single-threaded servers (gunicorn's sync workers, GUNICORN_THREADS=1) are passed through untouched: they
serve one request at a time and leave the excess in the kernel's accept queue, as before.

The pool is local to the process on purpose: it measures this process's capacity, nothing shared (shared
limits such as the chat rate limits live in Redis).

Never gated: the web widget's push streams and the chat API's event streams (bounded and capped on their
own, see `_is_stream`), liveness, readiness and metrics (a load balancer and Prometheus must hear back from a
busy process), and static files. Readiness answers 503 at once while the drain file (HUB_DRAIN_FILE) exists:
the Kubernetes preStop hook creates it, so load balancers stop sending before gunicorn gets SIGTERM.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation.trans_real import get_supported_language_variant, parse_accept_lang_header

from apps.observability import metrics

__all__ = ["AdmissionGate", "WorkPool", "admission_wrap"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Route label of refused requests in hub_http_request_duration_seconds (they never reach Django's router).
REFUSED_ROUTE = "admission:refused"
_UNGATED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Ungated paths that query the databases: run by any gunicorn thread, they close the connections they
#: opened, or every thread would keep its own (the work threads' are the ones worth keeping).
_DATABASE_PATHS = frozenset({"/readyz", "/metrics"})
#: The web widget's push streams (issue 17): long-lived and idle, they would hold a work thread for their
#: whole life. They run on their gthread thread instead, capped per process
#: (HUB_WIDGET_STREAMS_PER_PROCESS) and bounded in time (HUB_WIDGET_STREAM_SECONDS); they close their
#: database connections like the paths above.
#: The chat API's event stream of a conversation (issue 18) is the same kind of stream, under the same caps.
_STREAMS = (("/widget/v1/", "/stream"), ("/api/v1/conversations/", "/events"))


def _is_stream(path: str) -> bool:
    return any(path.startswith(prefix) and path.endswith(suffix) for prefix, suffix in _STREAMS)


_END = object()
#: Weight of the latest job in the moving average of job run time (about the last ten jobs count).
SERVICE_AVERAGE_WEIGHT = 0.1


class _Job:
    """One admitted request: run by a work thread, its body handed to the gunicorn thread chunk by chunk."""

    def __init__(self, app: WSGIApp, environ: dict[str, Any], start_response: StartResponse) -> None:
        self.app = app
        self.environ = environ
        self.start_response = start_response
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.chunks: queue.Queue[object] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None

    def run(self) -> None:
        """Call the application and iterate its response, here, in the work thread."""
        try:
            result = self.app(self.environ, self.start_response)
            try:
                for chunk in result:
                    if not self._put(chunk):
                        break
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # Django's request_finished: this thread's database connections are tidied
        except BaseException as exc:  # handed to the gunicorn thread, which reports it as it always does
            self.error = exc
        finally:
            self._put(_END)

    def _put(self, item: object) -> bool:
        while not self.cancelled.is_set():
            try:
                self.chunks.put(item, timeout=1.0)
                return True
            except queue.Full:  # a slow client reading a streamed response
                continue
        return False


class _Body:
    """The response as the server sees it: the chunks the work thread produces, in order."""

    def __init__(self, job: _Job) -> None:
        self._job = job

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._job.chunks.get()) is not _END:
            yield chunk  # type: ignore[misc]
        if self._job.error is not None:
            raise self._job.error

    def close(self) -> None:
        self._job.cancelled.set()  # the client went away mid-stream: the work thread stops producing


class WorkPool:
    """`permits` long-lived threads do the application's work; up to `waiting` requests queue for them.

    The same few threads run every request, so a process holds `permits` database connections per alias
    (Django's are per thread), not one per gunicorn thread. Jobs start in arrival order.
    """

    def __init__(self, *, permits: int, waiting: int, max_wait: float = float("inf")) -> None:
        self.permits = permits
        self.capacity = permits + waiting
        self.max_wait = max_wait
        #: Moving average of how long a job runs: a request whose expected wait exceeds max_wait is
        #: refused at once rather than after waiting max_wait for nothing.
        self.service_seconds = 0.0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        self._busy = 0
        self._pid = 0  # threads are started in the process that uses them (after gunicorn's fork)

    def submit(self, job: _Job, *, timeout: float) -> bool:
        """Queue `job` and wait until a work thread starts it; False (and never run) when refused."""
        with self._lock:
            if self._pid != os.getpid():
                self._start_threads()
            if self._busy + len(self._queue) >= self.capacity or self._expected_wait() > self.max_wait:
                return False
            self._queue.append(job)
            self._ready.notify()
        if job.started.wait(timeout):
            return True
        with self._lock:
            if job.started.is_set():  # started just as the wait timed out: it runs
                return True
            self._queue.remove(job)
            return False

    def _expected_wait(self) -> float:
        """Seconds a job queued now would wait to start (0 when a work thread is idle)."""
        if self._busy + len(self._queue) < self.permits:
            return 0.0
        return (len(self._queue) / self.permits + 0.5) * self.service_seconds

    def _start_threads(self) -> None:
        self._pid, self._busy = os.getpid(), 0
        self._queue.clear()
        for n in range(self.permits):
            threading.Thread(target=self._work, name=f"hub-work-{n}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._ready.wait()
                job = self._queue.popleft()
                self._busy += 1
                job.started.set()
            started = time.perf_counter()
            try:
                job.run()
            finally:
                took = time.perf_counter() - started
                with self._lock:
                    self._busy -= 1
                    self.service_seconds += SERVICE_AVERAGE_WEIGHT * (took - self.service_seconds)


class _ClosingConnections:
    """A response whose close() also closes the database connections of the thread that served it."""

    def __init__(self, result: Iterable[bytes]) -> None:
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            connections.close_all()


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
    """WSGI middleware: a request reaches the application only through the work pool (module docstring)."""

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
        self.pool = WorkPool(permits=permits, waiting=waiting, max_wait=max_wait)
        self.max_wait = max_wait
        self.retry_after = retry_after
        self.drain_file = drain_file
        self.static_prefix = static_prefix

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in _UNGATED_PATHS or path.startswith(self.static_prefix):
            if path == "/readyz" and self.drain_file and os.path.exists(self.drain_file):
                return self._draining(start_response)
            result = self.app(environ, start_response)
            return _ClosingConnections(result) if path in _DATABASE_PATHS else result
        if _is_stream(path):
            return _ClosingConnections(self.app(environ, start_response))
        if not environ.get("wsgi.multithread"):
            return self.app(environ, start_response)  # a sync worker serves one request at a time anyway
        started = time.perf_counter()
        job = _Job(self.app, environ, start_response)
        if not self.pool.submit(job, timeout=self.max_wait):
            return self._refuse(environ, start_response, started)
        return _Body(job)

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
