"""The base every vendor simulator extends: a threaded HTTP(S) server on loopback, routing (also for the
sub-requests of a vendor's batch call), the gate in front of every handler (auth, rate limits, injected
errors, outages, corrupted answers), the admin endpoints and the Python control API tests use. Vendor
specifics live in connectors/<vendor>/simulator(.py|/)."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from connectors.simulation.faults import Faults
from connectors.simulation.messages import (
    Route,
    SimRequest,
    SimResponse,
    json_response,
    proxy_error_page,
    reshape_json,
)
from connectors.simulation.seed import DEFAULT_COUNTS, Seed
from connectors.simulation.tables import Table, now_s
from connectors.simulation.tls import ensure_tls
from connectors.simulation.tokens import TokenStore


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks
        return

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = SimRequest(
            self.command,
            parts.path,
            # repeated parameters (properties=a&properties=b) arrive comma-joined, like the vendors accept
            {k: ",".join(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            {k.lower(): v for k, v in self.headers.items()},  # handlers look up lower-case names
            body,
        )
        response = self.server.simulator.dispatch(request)
        if response.reset:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        drip = self.server.simulator.faults.drip
        if drip and not request.path.startswith("/__admin/"):
            chunk, delay = drip
            for start in range(0, len(response.body), chunk):
                self.wfile.write(response.body[start : start + chunk])
                self.wfile.flush()
                time.sleep(delay)
        else:
            self.wfile.write(response.body)

    # http.server looks handlers up by these exact names.
    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    simulator: Simulator


class Simulator:
    """Base for one vendor simulator: routing, the fault gate, admin endpoints and lifecycle."""

    vendor: ClassVar[str]
    scheme: ClassVar[str] = "http"

    def __init__(
        self,
        *,
        state_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 42,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.seed = Seed(seed)
        self.counts = {**DEFAULT_COUNTS, **(counts or {})}
        self.faults = Faults(seed)
        self.tokens = TokenStore()
        self.tables: dict[str, Table] = {}
        self.routes: list[Route] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Self:
        server = _Server((self.host, self.port), _Handler)
        server.simulator = self
        if self.scheme == "https":
            tls = ensure_tls(self.state_dir / "tls")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls.cert, tls.key)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sim-{self.vendor}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ca_bundle(self) -> str | None:
        return str(ensure_tls(self.state_dir / "tls").ca_cert) if self.scheme == "https" else None

    def describe(self) -> dict[str, Any]:
        """Base URL and demo credentials, for `simulators status --json` and for tests."""
        return {"vendor": self.vendor, "base_url": self.base_url, "ca_bundle": self.ca_bundle}

    # request path
    def route(self, method: str, pattern: str, handler: Callable[[SimRequest], SimResponse]) -> None:
        self.routes.append((method, re.compile(pattern + r"\Z"), handler))

    def dispatch(self, request: SimRequest) -> SimResponse:
        if request.path.startswith("/__admin/"):
            return self.admin(request)
        faults = self.faults
        if faults.latency:
            time.sleep(faults.latency)
        if faults.outage == "reset":
            return SimResponse(503, reset=True)
        if faults.outage:
            return SimResponse(503, b"<html><body>Service Unavailable</body></html>", "text/html")
        try:
            found = self.find_route(request.method, request.path)
            if found is not None:
                handler, request.match = found
                return self.gate(request) or self._maybe_corrupt(request, handler(request))
            return self.error(404, "The requested resource does not exist")
        except Exception as exc:  # a simulator bug must surface as a vendor-style 500, not a hang
            return self.error(500, f"Internal simulator error: {exc!r}")

    def find_route(
        self, method: str, path: str
    ) -> tuple[Callable[[SimRequest], SimResponse], re.Match[str]] | None:
        """The first route for `method` whose pattern matches `path`, with its match (also for the
        sub-requests of a vendor's batch call, which run the same handlers)."""
        for route_method, pattern, handler in self.routes:
            if route_method == method:
                match = pattern.match(path)
                if match:
                    return handler, match
        return None

    def gate(self, request: SimRequest) -> SimResponse | None:
        """Apply auth and injected errors/limits before the handler; vendors override `authenticate`."""
        if self.is_public(request):
            return None
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        if self.faults.take_rate_limit():
            return self.rate_limited(request)
        status = self.faults.take_error()
        if status is not None:
            return self.error(status, "Injected failure")
        return None

    def _maybe_corrupt(self, request: SimRequest, response: SimResponse) -> SimResponse:
        if not 200 <= response.status < 300 or self.is_public(request):
            return response
        kind = self.faults.take_malformed()
        return response if kind is None else self.malformed(request, response, kind)

    def malformed(self, request: SimRequest, response: SimResponse, kind: str) -> SimResponse:
        """Corrupt a successful answer as `kind` says (see MALFORMED_KINDS); XML vendors override."""
        if kind == "truncated":
            body = response.body[: len(response.body) // 2]
        elif kind == "garbage":
            body = proxy_error_page(request)
        else:
            body = json.dumps(reshape_json(json.loads(response.body), self.payload_keys, kind)).encode()
        return SimResponse(response.status, body, response.content_type, dict(response.headers))

    #: Top-level keys that hold a JSON answer's data, most specific first (for missing/wrong_type).
    payload_keys: ClassVar[tuple[str, ...]] = ()

    def is_public(self, request: SimRequest) -> bool:
        return False

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        return None

    def error(self, status: int, message: str) -> SimResponse:
        return json_response(status, {"error": message})

    def rate_limited(self, request: SimRequest) -> SimResponse:
        retry_after = str(self.faults.rate_limit_retry_after)
        return json_response(429, {"error": "rate limited"}, **{"Retry-After": retry_after})

    # control API (Python; mirrored by /__admin/ endpoints for subprocess use)
    def inject(self, **spec: Any) -> None:
        """See `Faults.configure`; also `expire_tokens=True`."""
        if spec.pop("expire_tokens", False):
            self.expire_tokens()
        if "token_ttl" in spec:
            self.tokens.ttl = float(spec.pop("token_ttl"))
        self.faults.configure(spec)

    def clear_faults(self) -> None:
        self.faults.configure({"clear": True})
        self.tokens.ttl = TokenStore().ttl

    def expire_tokens(self) -> None:
        self.tokens.expire_all()

    def count(self, stream: str) -> int:
        return sum(1 for row in self.tables[stream].rows.values() if not row.deleted)

    def touch(self, stream: str, *, count: int = 1, ids: list[str] | None = None) -> list[str]:
        """Modify records (newest change time, same second) so incremental reads see them."""
        table = self.tables[stream]
        chosen = ids or [row.id for row in table.since()[:count]]
        ts = now_s()
        for row_id in chosen:
            self.mutate(stream, row_id, ts=ts)
        return chosen

    def mutate(self, stream: str, row_id: str, *, ts: int) -> None:
        self.tables[stream].update(row_id, {}, ts=ts)

    def delete(self, stream: str, row_id: str) -> None:
        table = self.tables[stream]
        table.rows[row_id].deleted = True
        table.update(row_id, {})

    def admin(self, request: SimRequest) -> SimResponse:
        action = request.path.removeprefix("/__admin/")
        body = request.json() if request.body else {}
        if action == "faults" and request.method == "POST":
            self.inject(**body)
            return json_response(200, {"ok": True})
        if action == "touch" and request.method == "POST":
            ids = self.touch(body["stream"], count=body.get("count", 1), ids=body.get("ids"))
            return json_response(200, {"ids": ids})
        if action == "delete" and request.method == "POST":
            self.delete(body["stream"], body["id"])
            return json_response(200, {"ok": True})
        if action == "state":
            return json_response(200, {**self.describe(), "counts": {s: self.count(s) for s in self.tables}})
        return json_response(404, {"error": f"unknown admin action {action}"})
