"""A bot's webhook endpoint on 127.0.0.1 for the messaging-platform simulators to call.

`BotEndpoint(adapter)` answers like the hub's webhook view will: handshake first, then verify the
signature over the exact URL and raw body, then parse; it records every request and every result, so a
test sees both what the platform sent and what the adapter made of it.

    with BotEndpoint(adapter) as bot:
        sim.deliver_message(bot.url, "+4915112345678", "Hallo")
        assert bot.events[0].messages[0].text == "Hallo"
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from connectors.messaging import ChannelAdapter, PayloadInvalid, SignatureInvalid, WebhookEvents


@dataclass(frozen=True)
class Received:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class BotEndpoint:
    def __init__(self, adapter: ChannelAdapter, *, path: str = "/hooks/channel/demo") -> None:
        self.adapter = adapter
        self.path = path
        self.requests: list[Received] = []
        self.events: list[WebhookEvents] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, content_type = endpoint.handle(
                    self.command, self.path, dict(self.headers.items()), body
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str]:
        """What the hub's webhook view does: handshake, verify, parse; 401 refused, 400 invalid."""
        url = f"http://127.0.0.1:{self._server.server_address[1]}{target}"
        with self._lock:
            self.requests.append(Received(method, url, headers, body))
        answer = self.adapter.handshake(method=method, query=dict(parse_qsl(urlsplit(target).query)),
                                        headers=headers)  # fmt: skip
        if answer is not None:
            return answer.status, answer.body, answer.content_type
        try:
            self.adapter.verify(url=url, headers=headers, body=body, now=time.time())
            events = self.adapter.parse(headers=headers, body=body)
        except SignatureInvalid as exc:
            with self._lock:
                self.refused.append(exc.reason)
            return 401, b"", "text/plain"
        except PayloadInvalid:
            with self._lock:
                self.refused.append("payload")
            return 400, b"", "text/plain"
        with self._lock:
            self.events.append(events)
        if events.answer is not None:
            return events.answer.status, events.answer.body, events.answer.content_type
        return 200, b"", "text/plain"

    def wait_events(self, count: int, *, timeout: float = 5.0) -> list[WebhookEvents]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.events)
