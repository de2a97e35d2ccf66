"""A small /metrics server inside a Celery worker, for workers on machines without a web process.

Set HUB_METRICS_WORKER_PORT and the worker's main process serves the samples its processes wrote (the
same access rules as the web endpoint). It leaves out the scrape-time gauges (outbox, lag, breakers,
queues): the web processes serve those, and one source each keeps sums in Prometheus right.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from apps.observability.access import check_scraper
from apps.observability.collectors import scrape_registry

logger = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def metrics_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found.\n"]
    # No proxy stands in front of a worker's own port: the direct peer is the scraper.
    verdict = check_scraper(
        authorization=environ.get("HTTP_AUTHORIZATION", ""), address=environ.get("REMOTE_ADDR", "")
    )
    if verdict == "unauthorized":
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
        )
        return [b"A valid bearer token is required.\n"]
    if verdict == "forbidden":
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"This address may not read metrics.\n"]
    body = generate_latest(scrape_registry(scrape_time=False))
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def serve_in_thread(*, host: str, port: int) -> WSGIServer:
    """Start the exporter on a daemon thread; return the server (its port is real even if 0 was asked)."""
    server = make_server(host, port, metrics_app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-exporter", daemon=True)
    thread.start()
    logger.info("metrics exporter listening", extra={"port": server.server_port})
    return server


def start_worker_exporter() -> WSGIServer | None:
    port: int = settings.HUB_METRICS_WORKER_PORT
    if not port:
        return None
    return serve_in_thread(host=settings.HUB_METRICS_WORKER_BIND, port=port)
