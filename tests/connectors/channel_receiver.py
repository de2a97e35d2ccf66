"""A stand-in for the hub's webhook view in connector tests: verify, parse, answer, keep what arrived.

The Django view (apps/chat) does the same plus de-duplication and queueing; this one lets the platform
simulators POST to a real URL on loopback: simulator -> HTTP -> adapter -> reply -> simulator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from connectors.messaging import ChannelAdapter, PayloadInvalid, SignatureInvalid, WebhookEvents
from tests.fixtures.loopback import loopback_server


class Receiver:
    def __init__(self, adapter: ChannelAdapter) -> None:
        self.adapter = adapter
        self.events: list[WebhookEvents] = []
        self.refused: list[str] = []
        self.url = ""


@contextmanager
def receiver(adapter: ChannelAdapter) -> Iterator[Receiver]:
    """Serve `adapter` as a webhook on http://127.0.0.1:<free port>/hook for the duration of the block."""
    state = Receiver(adapter)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            status, payload, content_type = 200, b"", "text/plain"
            try:
                state.adapter.verify(url=state.url, headers=headers, body=body, now=time.time())
                events = state.adapter.parse(headers=headers, body=body)
                state.events.append(events)
                if events.answer is not None:
                    status, payload = events.answer.status, events.answer.body
                    content_type = events.answer.content_type
            except SignatureInvalid as exc:
                state.refused.append(exc.reason)
                status = 401
            except PayloadInvalid:
                state.refused.append("payload")
                status = 400
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    with loopback_server(Handler) as base:
        state.url = f"{base}/hook"
        yield state
