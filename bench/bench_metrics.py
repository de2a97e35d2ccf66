"""Cost of the metrics middleware per request, and of one /metrics scrape.

- in-process: a WSGI handler serving /healthz (no I/O) with HUB_METRICS_ENABLED on and off, in alternating
  rounds in the same run, so the difference is the middleware (route lookup + one histogram observation
  written to the multi-process file);
- end to end: the same comparison through gunicorn on loopback (one worker, sequential requests);
- scrape: /metrics rendered in-process (every process file merged plus the scrape-time gauges).

The chat turns/s on/off comparison is added next to these once the chat pipeline calls the helpers.
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from typing import Any

from apps.core.embedded import free_port
from bench.common import gunicorn, summarize

ROUNDS = 15
IN_PROCESS_REQUESTS = 500
HTTP_REQUESTS = 150
SCRAPES = 30
OBSERVATIONS = 20_000


def _handler(*, enabled: bool) -> Any:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(HUB_METRICS_ENABLED=enabled):
        return WSGIHandler()  # middleware reads the switch when it is built


def _environ(path: str) -> dict[str, Any]:
    from django.test.client import RequestFactory

    environ: dict[str, Any] = RequestFactory()._base_environ(  # type: ignore[attr-defined]
        PATH_INFO=path, REQUEST_METHOD="GET", HTTP_HOST="127.0.0.1", REMOTE_ADDR="127.0.0.1"
    )
    return environ


def _in_process_rps(handler: Any, n: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        assert status.startswith("200"), status

    started = time.perf_counter()
    for _ in range(n):
        response = handler(_environ("/healthz"), start_response)
        b"".join(response)
        response.close()
    return n / (time.perf_counter() - started)


def _http_rps(base: str, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        urllib.request.urlopen(base + "/healthz", timeout=5).read()
    return n / (time.perf_counter() - started)


def _overhead(on: list[float], off: list[float]) -> dict[str, float]:
    """Medians over alternating rounds; the cost is the median of the per-round pairs (drift cancels)."""
    on_rps, off_rps = statistics.median(on), statistics.median(off)
    pairs = [(b - a) / b * 100 for a, b in zip(on, off, strict=True)]
    return {
        "rps_metrics_on": round(on_rps, 1),
        "rps_metrics_off": round(off_rps, 1),
        "cost_pct": round(statistics.median(pairs), 2),
        "cost_us_per_request": round((1 / on_rps - 1 / off_rps) * 1e6, 1),
    }


def _middleware_work_us() -> dict[str, float]:
    """What the middleware adds to every request, timed alone: the route lookup and one observation."""
    from django.test.client import RequestFactory
    from django.urls import resolve

    from apps.observability import metrics
    from apps.observability.middleware import route_name

    request = RequestFactory().get("/healthz")
    request.resolver_match = resolve("/healthz")
    started = time.perf_counter()
    for _ in range(OBSERVATIONS):
        metrics.observe_http_request(route=route_name(request), method="GET", status=200, seconds=0.001)
    resolved = (time.perf_counter() - started) / OBSERVATIONS * 1e6
    request.resolver_match = None  # answered before URL resolution: the middleware resolves the path
    started = time.perf_counter()
    for _ in range(OBSERVATIONS):
        metrics.observe_http_request(route=route_name(request), method="GET", status=200, seconds=0.001)
    unresolved = (time.perf_counter() - started) / OBSERVATIONS * 1e6
    return {"resolved_route_us": round(resolved, 2), "unresolved_route_us": round(unresolved, 2)}


def run() -> dict[str, object]:
    import django

    django.setup()
    on_handler, off_handler = _handler(enabled=True), _handler(enabled=False)
    _in_process_rps(on_handler, 200)  # warm up both paths
    _in_process_rps(off_handler, 200)
    on: list[float] = []
    off: list[float] = []
    for _ in range(ROUNDS):
        on.append(_in_process_rps(on_handler, IN_PROCESS_REQUESTS))
        off.append(_in_process_rps(off_handler, IN_PROCESS_REQUESTS))
    in_process = _overhead(on, off)

    http_on: list[float] = []
    http_off: list[float] = []
    with (
        gunicorn(free_port(), workers=1, env={"HUB_METRICS_ENABLED": "true"}) as base_on,
        gunicorn(free_port(), workers=1, env={"HUB_METRICS_ENABLED": "false"}) as base_off,
    ):
        _http_rps(base_on, 50)
        _http_rps(base_off, 50)
        for _ in range(ROUNDS):
            http_on.append(_http_rps(base_on, HTTP_REQUESTS))
            http_off.append(_http_rps(base_off, HTTP_REQUESTS))
    end_to_end = _overhead(http_on, http_off)

    from django.core.cache import cache

    from apps.observability.collectors import _CACHE_KEY

    samples = []
    for _ in range(SCRAPES):
        cache.delete(_CACHE_KEY)  # the worst case: the database gauges are read every time
        started = time.perf_counter()
        b"".join(on_handler(_environ("/metrics"), lambda status, headers: None))
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "middleware_work": _middleware_work_us(),
        "in_process_healthz": in_process,
        "gunicorn_healthz": end_to_end,
        "scrape_uncached": summarize(samples),
        "rounds": ROUNDS,
    }
