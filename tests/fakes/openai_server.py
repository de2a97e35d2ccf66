"""A fake OpenAI-compatible HTTP server on 127.0.0.1 for provider tests.

Routes live in a table (`server.routes[("POST", "/v1/embeddings")] = handler`), so other endpoints such as
`/v1/chat/completions` can be added by the tests that need them. Every request is recorded; planned
failures (`fail_next`) answer before the route does, to exercise 401/429/500 and malformed bodies.

    with FakeOpenAI() as server:
        provider = OpenAIProvider(base_url=server.base_url, model="m", api_key=server.api_key)
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import numpy as np

API_KEY = "sk-fake-3f9c1a7e5d2b4c6a8e0f1b3d5c7a9e1f"  # a test credential, never a real one


@dataclass
class FakeRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class FakeResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, payload: Any, **headers: str) -> FakeResponse:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


Handler = Callable[[FakeRequest], FakeResponse]


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for `text` (the same text always gets the same vector)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    vector = np.random.default_rng(seed).normal(size=dimensions)
    return [round(float(x), 6) for x in vector / np.linalg.norm(vector)]


def openai_error(status: int, message: str, kind: str, **headers: str) -> FakeResponse:
    """An answer in OpenAI's error envelope."""
    return FakeResponse.of_json(
        status, {"error": {"message": message, "type": kind, "code": None}}, **headers
    )


class FakeOpenAI:
    """The server; use as a context manager or call start()/stop()."""

    def __init__(self, *, api_key: str = API_KEY, dimensions: int | None = None) -> None:
        self.api_key = api_key
        #: Forces the vector length regardless of the `dimensions` asked for (to test the size check).
        self.dimensions = dimensions
        self.routes: dict[tuple[str, str], Handler] = {("POST", "/v1/embeddings"): self.embeddings}
        self.requests: list[FakeRequest] = []
        self._planned: deque[FakeResponse] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Self:
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = FakeRequest(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                response = fake.dispatch(request)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The API root, as OpenAI clients expect it (`…/v1`)."""
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # --- behaviour -------------------------------------------------------------------------------------
    def fail_next(
        self, status: int, *, body: bytes | None = None, headers: dict[str, str] | None = None, count: int = 1
    ) -> None:
        """Answer the next `count` requests with `status` (OpenAI's error envelope unless `body` is set)."""
        if body is None:
            response = openai_error(status, f"planned failure {status}", "server_error", **(headers or {}))
        else:
            response = FakeResponse(status, body, {"Content-Type": "application/json", **(headers or {})})
        with self._lock:
            self._planned.extend([response] * count)

    def dispatch(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            self.requests.append(request)
            planned = self._planned.popleft() if self._planned else None
        if planned is not None:
            return planned
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            # Like OpenAI, the message names the key it got (here in full, so tests can check redaction).
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            return openai_error(401, f"Incorrect API key provided: {given}.", "invalid_request_error")
        handler = self.routes.get((request.method, request.path.split("?")[0]))
        if handler is None:
            return openai_error(
                404, f"Unknown request URL: {request.method} {request.path}.", "invalid_request_error"
            )
        return handler(request)

    def embeddings(self, request: FakeRequest) -> FakeResponse:
        try:
            payload = request.json()
            model, inputs = payload["model"], payload["input"]
        except (ValueError, KeyError, TypeError):
            return openai_error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if isinstance(inputs, str):
            inputs = [inputs]
        size = self.dimensions or int(payload.get("dimensions") or 1536)
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text, size)}
            for i, text in reversed(list(enumerate(inputs)))  # out of order: clients must sort by index
        ]
        usage = {"prompt_tokens": sum(len(t.split()) for t in inputs), "total_tokens": 0}
        return FakeResponse.of_json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    def calls(self, path: str = "/v1/embeddings") -> list[FakeRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]
