"""`$batch`: a multipart/mixed body of independent requests and change sets (all or nothing: a failing
member undoes the others), answered in order as application/http parts; `odata.continue-on-error` goes on
past a failure."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from email import message_from_bytes
from email.message import Message
from urllib.parse import parse_qs, urlsplit

from connectors.dynamics.simulator.endpoints_rows import RowEndpoints
from connectors.dynamics.simulator.schema import API, NOT_FOUND
from connectors.simulation import SimRequest, SimResponse


class BatchEndpoint(RowEndpoints):
    """POST /api/data/v9.2/$batch."""

    def batch(self, request: SimRequest) -> SimResponse:
        """multipart/mixed: independent requests and change sets (all-or-nothing), answered in order."""
        content_type = request.headers.get("content-type", "")
        if "multipart/mixed" not in content_type or "boundary=" not in content_type:
            return self.error(400, "The content type of a $batch request must be multipart/mixed.")
        outer = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
        parts = outer.get_payload()
        if not outer.is_multipart() or not isinstance(parts, list):
            return self.error(400, "The $batch body is not a multipart message.")
        continue_on_error = "odata.continue-on-error" in request.headers.get("prefer", "")
        answers: list[str] = []
        failed = False
        for part in parts:
            assert isinstance(part, Message)
            if failed and not continue_on_error:
                break
            if part.get_content_type() == "multipart/mixed":
                text, ok = self._changeset(request, part)
            else:
                response = self._inner(request, part, None)
                text, ok = _http_part(response), response.status < 400
            answers.append(text)
            failed = failed or not ok
        boundary = f"batchresponse_{uuid.uuid4()}"
        body = "".join(f"--{boundary}\r\n{a}\r\n" for a in answers) + f"--{boundary}--\r\n"
        return SimResponse(200, body.encode(), f"multipart/mixed; boundary={boundary}",
                           {"OData-Version": "4.0"})  # fmt: skip

    def _changeset(self, request: SimRequest, part: Message) -> tuple[str, bool]:
        undo: list[Callable[[], None]] = []
        answers: list[tuple[str | None, SimResponse]] = []
        members = part.get_payload()
        assert isinstance(members, list)
        for member in members:
            assert isinstance(member, Message)
            response = self._inner(request, member, undo)
            if response.status >= 400:
                for step in reversed(undo):
                    step()
                return _http_part(response, member.get("Content-ID")), False
            answers.append((member.get("Content-ID"), response))
        boundary = f"changesetresponse_{uuid.uuid4()}"
        inner = "".join(f"--{boundary}\r\n{_http_part(r, cid)}\r\n" for cid, r in answers) + f"--{boundary}--"
        return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}", True

    def _inner(
        self, request: SimRequest, part: Message, undo: list[Callable[[], None]] | None
    ) -> SimResponse:
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            return self.error(400, "A batch part must be an application/http request.")
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        lines = head.decode("utf-8", "replace").split("\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rsplit(" ", 1)[0]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        headers.setdefault("authorization", request.headers.get("authorization", ""))
        parts = urlsplit(target)
        path = parts.path if parts.path.startswith("/") else f"{API}/{parts.path}"
        query = {k: ",".join(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        inner = SimRequest(method.upper(), path, query, headers, body.rstrip(b"\n"))
        handlers: dict[str, tuple[str, Callable[..., SimResponse]]] = {
            "PATCH": (rf"{API}/(?P<set>\w+)\((?P<key>[^/]+)\)", self.upsert_row),
            "POST": (rf"{API}/(?P<set>\w+)", self.create_row),
        }
        if inner.method not in handlers:
            return self.error(400, f"{inner.method} is not supported inside $batch by the simulator.")
        pattern, handler = handlers[inner.method]
        match = re.fullmatch(pattern, inner.path)
        if match is None:
            return self.error(404, "The requested resource does not exist", NOT_FOUND)
        inner.match = match
        return handler(inner, undo)


def _http_part(response: SimResponse, content_id: str | None = None) -> str:
    """One answer of a $batch as an application/http part."""
    reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
              412: "Precondition Failed", 429: "Too Many Requests"}.get(response.status, "Error")  # fmt: skip
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    if response.body:
        lines.append(f"Content-Type: {response.content_type}")
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    return head + "\r\n" + "\r\n".join(lines) + "\r\n\r\n" + response.body.decode()
