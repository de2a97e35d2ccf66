"""The admission gate's test kit (apps/core/admission.py): a WSGI call recorder, an application that blocks
until released, a gate with small defaults, and a gate whose only work thread is busy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from apps.core.admission import AdmissionGate


class Call:
    """A WSGI call's start_response: what status and headers the gate or the application sent."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: dict[str, str] = {}

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status, self.headers = status, dict(headers)


def environ(path: str = "/api/v1/conversations", **extra: str) -> dict[str, Any]:
    return {"PATH_INFO": path, "REQUEST_METHOD": "POST", "wsgi.multithread": True, **extra}


class BlockingApp:
    """Answers 200 once `release` is set; records which thread ran it and closed its response."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.threads: list[str] = []
        self.closed_in: list[str] = []
        self.order: list[Any] = []

    def __call__(self, env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        self.threads.append(threading.current_thread().name)
        self.order.append(env.get("n"))
        if env["PATH_INFO"].startswith("/api/"):
            self.entered.set()
            self.release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return self._body()

    def _body(self) -> Iterator[bytes]:
        try:
            yield b"one "
            yield b"two"
        finally:
            self.closed_in.append(threading.current_thread().name)


def gate(app: Any, **options: Any) -> AdmissionGate:
    defaults = {"permits": 1, "waiting": 0, "max_wait": 5.0, "retry_after": 3}
    return AdmissionGate(app, **{**defaults, **options})


def serve(g: AdmissionGate, env: dict[str, Any]) -> tuple[Call, bytes]:
    call = Call()
    body = g(env, call)
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return call, data


@contextmanager
def busy_gate() -> Iterator[tuple[AdmissionGate, BlockingApp]]:
    """A gate whose only work thread is busy with a request (and no waiting place)."""
    app = BlockingApp()
    g = gate(app)
    first: dict[str, Any] = {}
    holder = threading.Thread(target=lambda: first.update(result=serve(g, environ())))
    holder.start()
    assert app.entered.wait(5)
    yield g, app
    app.release.set()
    holder.join(5)
    assert first["result"][1] == b"one two"
