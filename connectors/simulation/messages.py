"""What a simulator handler receives and answers: the parsed request (with its JSON and form readers),
the response, the route table entry, and what an injected `malformed` fault answers instead (a proxy
error page echoing the request, a JSON payload reshaped). Pure data, no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape


@dataclass(slots=True)
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def json_or_none(self) -> Any:
        """The body as JSON, or None when it is not JSON (each handler answers that its vendor's way)."""
        try:
            return self.json()
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass(slots=True)
class SimResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # drop the connection without answering (outage)


def json_response(status: int, payload: Any, **headers: str) -> SimResponse:
    return SimResponse(status, json.dumps(payload, separators=(",", ":")).encode(), headers=dict(headers))


Route = tuple[str, re.Pattern[str], Callable[[SimRequest], SimResponse]]


def proxy_error_page(request: SimRequest) -> bytes:
    """An HTML error page from a (badly configured) proxy that echoes the request, credentials and all:
    a connector quoting a vendor body in its error message must still not leak a secret."""
    echo = f"{request.method} {request.path}\nAuthorization: {request.headers.get('authorization', '')}\n"
    echo += request.body[:2000].decode("utf-8", "replace")
    return (
        "<html><head><title>502 Proxy Error</title></head><body><h1>Proxy Error</h1>"
        f"<p>The proxy received an invalid response from an upstream server.</p><pre>{escape(echo)}</pre>"
        "</body></html>"
    ).encode()


def reshape_json(payload: Any, keys: tuple[str, ...], kind: str) -> Any:
    """Drop (`missing`) or replace with a scalar (`wrong_type`) the part of `payload` holding the data."""
    if isinstance(payload, list):
        return [] if kind == "missing" else {"unexpected": "shape"}
    if isinstance(payload, dict):
        key = next((k for k in keys if k in payload), None)
        if key is None:
            key = next((k for k, v in payload.items() if isinstance(v, list | dict)), None)
        if key is not None:
            if kind == "missing":
                del payload[key]
            else:
                payload[key] = "unexpected"
    return payload
