"""The admission gate in front of the WSGI application (apps/core/admission.py), without a server.

The behaviour under a real gunicorn and real load is in tests/chaos/test_overload.py and test_restart.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.core.admission import AdmissionGate, WorkPool
from tests.foundation.admission import BlockingApp, busy_gate, environ, gate, serve


@pytest.fixture
def busy() -> Iterator[tuple[AdmissionGate, BlockingApp]]:
    """A gate whose only work thread is busy with a request (and no waiting place)."""
    with busy_gate() as busy:
        yield busy


def test_the_excess_is_refused_at_once_with_retry_after_in_the_api_error_shape(
    busy: tuple[AdmissionGate, BlockingApp],
) -> None:
    g, app = busy
    started = time.perf_counter()
    call, data = serve(g, environ(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9"))
    assert time.perf_counter() - started < 0.5
    assert call.status.startswith("503")
    assert call.headers["Retry-After"] == "3"
    assert call.headers["Content-Type"] == "application/json"
    detail = json.loads(data)["detail"]
    assert "3" in detail and detail != "The service is busy. Please try again in 3 seconds."  # German
    assert len(app.threads) == 1, "the refused request never reached the application"


def test_a_browser_gets_a_small_page(busy: tuple[AdmissionGate, BlockingApp]) -> None:
    g, _app = busy
    call, data = serve(g, environ("/tenants/", HTTP_ACCEPT="text/html,*/*"))
    assert call.status.startswith("503") and call.headers["Content-Type"].startswith("text/html")
    assert b"The service is busy" in data


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/static/console.css"])
def test_health_readiness_metrics_and_static_files_are_never_refused(
    busy: tuple[AdmissionGate, BlockingApp], path: str
) -> None:
    g, _app = busy
    call, data = serve(g, environ(path, REQUEST_METHOD="GET"))
    assert call.status == "200 OK" and data == b"one two"


def test_a_waiting_request_that_does_not_start_in_time_is_refused() -> None:
    app = BlockingApp()
    g = gate(app, waiting=1, max_wait=0.2)
    holder = threading.Thread(target=lambda: serve(g, environ()))
    holder.start()
    assert app.entered.wait(5)
    started = time.perf_counter()
    call, _data = serve(g, environ())
    waited = time.perf_counter() - started
    app.release.set()
    holder.join(5)
    assert call.status.startswith("503")
    assert 0.15 < waited < 2
    assert len(app.threads) == 1


def test_admitted_requests_run_and_close_on_the_work_thread_in_arrival_order() -> None:
    app = BlockingApp()
    g = gate(app, waiting=3)

    def send(n: int) -> None:
        serve(g, {**environ(), "n": n})

    first = threading.Thread(target=send, args=(0,))
    first.start()
    assert app.entered.wait(5)
    others = []
    for n in range(1, 4):
        thread = threading.Thread(target=send, args=(n,))
        thread.start()
        others.append(thread)
        time.sleep(0.05)  # queued one after the other
    app.release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert app.order == [0, 1, 2, 3]
    assert set(app.threads) == {"hub-work-0"} and set(app.closed_in) == {"hub-work-0"}


def test_the_drain_file_turns_readiness_503_and_nothing_else(tmp_path: Path) -> None:
    drain = tmp_path / "draining"
    g = gate(BlockingApp(), drain_file=str(drain))
    assert serve(g, environ("/readyz", REQUEST_METHOD="GET"))[0].status == "200 OK"
    drain.touch()
    call, data = serve(g, environ("/readyz", REQUEST_METHOD="GET"))
    assert call.status.startswith("503") and json.loads(data) == {"status": "unavailable"}
    assert serve(g, environ("/healthz", REQUEST_METHOD="GET"))[0].status == "200 OK"


def test_a_single_threaded_server_calls_the_application_directly() -> None:
    app = BlockingApp()
    app.release.set()
    _call, data = serve(gate(app), {**environ(), "wsgi.multithread": False})
    assert data == b"one two" and app.threads == [threading.current_thread().name]


def test_an_application_error_reaches_the_server_and_frees_the_work_thread() -> None:
    calls = []

    def broken(env: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        start_response("200 OK", [])
        return [b"fine"]

    g = gate(broken)
    with pytest.raises(RuntimeError, match="boom"):
        serve(g, environ())
    assert serve(g, environ())[1] == b"fine"


def test_a_request_that_would_wait_too_long_by_the_recent_average_is_refused_at_once() -> None:
    app = BlockingApp()
    g = gate(app, waiting=5, max_wait=1.0)
    holder = threading.Thread(target=lambda: serve(g, environ()))
    holder.start()
    assert app.entered.wait(5)
    g.pool.service_seconds = 0.8  # recent jobs took 0.8 s: one waiting job means up to 1.2 s for the next
    queued = threading.Thread(target=lambda: serve(g, environ()))
    queued.start()
    time.sleep(0.1)
    started = time.perf_counter()
    call, _data = serve(g, environ())
    assert call.status.startswith("503") and time.perf_counter() - started < 0.5
    app.release.set()
    holder.join(5)
    queued.join(5)
    assert len(app.threads) == 2


def test_an_idle_pool_never_predicts_a_wait() -> None:
    pool = WorkPool(permits=2, waiting=0, max_wait=0.0)
    pool.service_seconds = 10.0
    assert pool._expected_wait() == 0.0
