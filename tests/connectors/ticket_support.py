"""Helpers for the ticket-thread tests: what every ticketing connector must do the same way (open a ticket as
the handoff does, append hub comments exactly once, refuse a closed ticket, type its faults), a stand-in for
the hub's vendor webhook endpoint (answers and keeps each request; the tests recompute the vendor's signature
themselves, no call into apps/), and a way to make `manage.py simulators` see in-process simulators as
running.

`conn` is a ticketing connector (a Connector that implements connectors.tickets.TicketThreads).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Cursor, WriteResult
from connectors.errors import ConnectorError, RateLimited, VendorUnavailable
from connectors.simulation import TicketSimulator
from connectors.tickets import COMMENT_STREAM, TicketState, TicketThread, supports_threads
from tests.fixtures.loopback import loopback_server


def ticket_open(conn: Any, *, queue: str) -> tuple[str, str]:
    """Create a ticket the way the handoff does; return (hub external id, vendor id)."""
    ext = f"handoff-{uuid.uuid4().hex[:10]}"
    fields = {"subject": "Chat handoff", "description": "transcript", "queue": queue}
    outcome = conn.write("tickets", [{"external_id": ext, "fields": fields}]).outcomes[0]
    assert outcome.error is None and outcome.vendor_id
    return ext, outcome.vendor_id


def comment(ticket_ext: str, body: str, ext: str | None = None, author: str = "") -> dict[str, Any]:
    """A customer's message for `COMMENT_STREAM`, as the hub's outbox sends it."""
    fields = {"ticket": ticket_ext, "body": body, "author": author}
    return {"external_id": ext or f"msg-{uuid.uuid4().hex[:10]}", "fields": fields}


def assert_thread_contract(conn: Any) -> None:
    """Threads are supported, the comment stream is write-only, and the connection check passes."""
    assert supports_threads(conn)
    streams = {s.name: s for s in conn.streams()}
    assert streams[COMMENT_STREAM].writable and not streams[COMMENT_STREAM].readable
    conn.check_connection()


def assert_cursor_resumes(
    conn: Any, ticket_id: str, add: Callable[[str, int], object], late: Callable[[int], object]
) -> TicketThread:
    """Five replies within two seconds come oldest first; a sixth `late` one in the very second the cursor
    stopped at comes alone on the next read (returned), and the cursor survives JSON."""
    second = int(time.time()) - 100
    for i in range(5):
        add(f"reply {i}", second + i // 3)
    first = conn.ticket_thread(ticket_id)
    assert sorted(c.body for c in first.comments) == [f"reply {i}" for i in range(5)]
    order = [(c.created_at, c.id) for c in first.comments]
    assert order == sorted(order)  # oldest first; within one second by id
    late(second + 1)
    again: TicketThread = conn.ticket_thread(ticket_id, cursor=first.cursor)
    restored = Cursor.from_json(json.loads(json.dumps(again.cursor.to_json())))
    assert conn.ticket_thread(ticket_id, cursor=restored).comments == []
    return again


def assert_appended_once(conn: Any, record: dict[str, Any]) -> WriteResult:
    """The same comment written twice (the outbox delivers at least once) is created once; the first write
    is returned."""
    first: WriteResult = conn.write(COMMENT_STREAM, [record])
    second = conn.write(COMMENT_STREAM, [record])
    assert first.failed == [] and second.failed == []
    assert (first.created, second.created, second.updated) == (1, 0, 1)
    assert first.outcomes[0].vendor_id == second.outcomes[0].vendor_id
    return first


def assert_missing_ticket_is_transient(conn: Any) -> ConnectorError:
    """A comment on a ticket not created yet (its outbox message may be in flight) is retried later."""
    with pytest.raises(ConnectorError) as info:
        conn.write(COMMENT_STREAM, [comment("handoff-not-created-yet", "hello")])
    assert not info.value.permanent
    return info.value


def assert_closed_ticket_is_permanent(sim: TicketSimulator, conn: Any, ext: str, ticket_id: str) -> None:
    """A comment on a ticket the agent closed fails that record for good."""
    sim.agent(ticket=ticket_id, state="closed")
    [failed] = conn.write(COMMENT_STREAM, [comment(ext, "anyone there?")]).failed
    assert failed.error is not None and "is closed" in failed.error


def assert_unknown_ticket_read_is_permanent(conn: Any, unknown: str, hostile: str) -> None:
    """Reading a ticket that does not exist is permanent; an id that would bend the query is refused."""
    with pytest.raises(ConnectorError) as info:
        conn.ticket_thread(unknown)
    assert info.value.permanent
    with pytest.raises(ConnectorError):
        conn.ticket_thread(hostile)


def assert_state_maps(
    sim: TicketSimulator, conn: Any, ticket_id: str, state: str, expected: TicketState
) -> TicketThread:
    """The agent sets the vendor's `state`; the thread reads it as `expected`."""
    sim.agent(ticket=ticket_id, state=state)
    thread: TicketThread = conn.ticket_thread(ticket_id)
    assert thread.state is expected
    return thread


def assert_thread_faults_typed(
    sim: TicketSimulator, conn: Any, ext: str, ticket_id: str, *, outage: str
) -> None:
    """A rate limit is RateLimited, an outage VendorUnavailable for reads and comments; then all is well."""
    sim.inject(rate_limit={"count": 1})
    with pytest.raises(RateLimited):
        conn.ticket_thread(ticket_id)
    sim.inject(outage=outage)
    with pytest.raises(VendorUnavailable):
        conn.ticket_thread(ticket_id)
    with pytest.raises(VendorUnavailable):
        conn.write(COMMENT_STREAM, [comment(ext, "during the outage")])
    sim.clear_faults()
    assert conn.write(COMMENT_STREAM, [comment(ext, "after")]).failed == []


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

    with loopback_server(Handler) as base:
        state.url = f"{base}{path}"
        yield state


def running_simulators(settings: Any, tmp_path: Path, **descriptions: dict[str, Any]) -> None:
    """Make `simulators status` see in-process simulators, as if `simulators up` had started them."""
    settings.HUB_HOME = str(tmp_path)
    state = tmp_path / "simulators"
    state.mkdir()
    (state / "simulators.pid").write_text(str(os.getpid()))
    (state / "simulators.json").write_text(json.dumps(descriptions))
