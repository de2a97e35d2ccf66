"""Helpers for the ticket-thread tests: a stand-in for the hub's vendor webhook endpoint (answers and keeps
each request; the tests recompute the vendor's signature themselves, no call into apps/), and a way to make
`manage.py simulators` see in-process simulators as running.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Recorder:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    status: int = 200
    answer: bytes = b""


@contextmanager
def hook_recorder(path: str = "/hook") -> Iterator[Recorder]:
    """Serve http://127.0.0.1:<free port><path> for the block; every POST is kept in `hits`."""
    state = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.hits.append(Hit("POST", self.path, dict(self.headers.items()), body))
            self.send_response(state.status)
            self.send_header("Content-Type", "text/xml" if state.answer.startswith(b"<") else "text/plain")
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def running_simulators(settings: Any, tmp_path: Path, **descriptions: dict[str, Any]) -> None:
    """Make `simulators status` see in-process simulators, as if `simulators up` had started them."""
    settings.HUB_HOME = str(tmp_path)
    state = tmp_path / "simulators"
    state.mkdir()
    (state / "simulators.pid").write_text(str(os.getpid()))
    (state / "simulators.json").write_text(json.dumps(descriptions))
