"""Server-Sent Events of a conversation's new messages: one relay for the web widget's stream and the chat
API's event stream (issue 18), over the conversation's Redis channel (apps/chat/services/widget.py).

A stream is bounded (HUB_WIDGET_STREAM_SECONDS), holds one of the process's slots
(HUB_WIDGET_STREAMS_PER_PROCESS), sends a comment every HUB_WIDGET_HEARTBEAT_SECONDS so proxies keep it
open, and ends with a `reconnect` event naming the last id; the client reconnects with Last-Event-ID and
first gets what it missed from the database. Nothing is kept in the process.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Generator, Iterator
from typing import Any

import redis
from django.conf import settings

from apps.chat.models import Message
from apps.chat.services import widget as svc
from apps.core.context import TenantRef, tenant_context
from apps.core.deadlines import DependencyUnavailable

#: Messages sent from the database on (re)connection, at most; a client further behind pages with `?after=`.
CATCH_UP = 100


class StreamBusy(Exception):
    """This process already serves its cap of streams (the caller answers 503 with Retry-After)."""


def event(name: str, data: Any, event_id: Any = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


def last_seen(*, conversation_id: Any, resume: str) -> int:
    """The id to resume after: Last-Event-ID (or `?after=`) when it is a message id, else the newest message
    (a first connection gets only what comes from now on)."""
    if resume.isascii() and resume.isdigit() and len(resume) <= 18:
        return int(resume)
    newest = (
        Message.objects.filter(conversation_id=conversation_id).order_by("-id").values_list("id", flat=True)
    )
    return next(iter(newest[:1]), 0)


class Relay:
    """The stream's body: iterates the relay; `close` (called by the response) releases the slot and the
    subscription even when the body was never iterated (a generator's `finally` would not run then)."""

    def __init__(self, tenant: TenantRef, conversation_id: Any, pubsub: Any, slot: Any, last_id: int) -> None:
        self._pubsub, self._slot, self._released = pubsub, slot, False
        self._body = _relay(tenant, conversation_id, pubsub, last_id)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return next(self._body)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        self._body.close()
        if not self._released:
            self._released = True
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self._pubsub.close()
            self._slot.__exit__(None, None, None)


def stream_open(*, tenant: TenantRef, conversation_id: Any, last_id: int) -> Relay:
    """Take a slot and subscribe now (so nothing published from here on is missed); the iterator relays.

    Raises StreamBusy at the cap and DependencyUnavailable without Redis. The iterator releases both when
    it ends or is closed (the server closes it when the client goes away).
    """
    try:
        slot = svc.stream_slot()
        slot.__enter__()
    except svc.StreamLimit:
        raise StreamBusy from None
    except (redis.ConnectionError, redis.TimeoutError):
        raise DependencyUnavailable("redis", "message push needs Redis") from None
    try:
        pubsub = svc.stream_subscribe(conversation_id=conversation_id)
    except (redis.ConnectionError, redis.TimeoutError):
        slot.__exit__(None, None, None)
        raise DependencyUnavailable("redis", "message push needs Redis") from None
    return Relay(tenant, conversation_id, pubsub, slot, last_id)


def _relay(tenant: TenantRef, conversation_id: Any, pubsub: Any, last_id: int) -> Generator[str, None, None]:
    """Subscribed first, then the messages missed since `last_id`, then live ones (none twice, by id)."""
    deadline = time.monotonic() + settings.HUB_WIDGET_STREAM_SECONDS
    heartbeat = settings.HUB_WIDGET_HEARTBEAT_SECONDS
    yield f"retry: {settings.HUB_WIDGET_RETRY_MS}\n: open\n\n"
    with tenant_context(tenant):
        missed = list(
            Message.objects.filter(conversation_id=conversation_id, id__gt=last_id).order_by("id")[:CATCH_UP]
        )
    for message in missed:
        last_id = message.id
        yield event("message", svc.message_event(message), message.id)
    quiet_since = time.monotonic()
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = pubsub.get_message(timeout=min(1.0, left))
        except (redis.ConnectionError, redis.TimeoutError):
            break  # the client reconnects and catches up from the database
        if item is None or item.get("type") != "message":
            if time.monotonic() - quiet_since >= heartbeat:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            continue
        try:
            data = json.loads(item["data"])
        except (ValueError, TypeError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("id"), int) or data["id"] <= last_id:
            continue
        last_id = data["id"]
        quiet_since = time.monotonic()
        yield event("message", data, data["id"])
    yield event("reconnect", {"after": last_id})
