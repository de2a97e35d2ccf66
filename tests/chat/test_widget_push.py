"""Widget push: a message published for a conversation reaches its open stream (through Redis pub/sub, no
process state), another conversation's does not; a reconnect with Last-Event-ID gets what it missed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from apps.chat.models import Channel, Conversation
from apps.chat.services import widget as widget_svc
from apps.core.admission import AdmissionGate, _is_stream
from apps.core.context import tenant_context
from tests.chat.widget_support import headers, start, widget_enable
from tests.fixtures.chat import sse_events
from tests.foundation.admission import BlockingApp, busy_gate, serve
from tests.foundation.admission import environ as admission_environ

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_a(channel_a: Channel, settings: Any) -> str:
    settings.HUB_WIDGET_STREAM_SECONDS = 3
    settings.HUB_WIDGET_HEARTBEAT_SECONDS = 1
    return widget_enable(channel_a)


def open_stream(client: Client, channel: Channel, key: str, started: dict[str, Any], **extra: Any) -> Any:
    response = client.get(
        f"/widget/v1/{channel.pk}/conversations/{started['conversation_id']}/stream",
        **headers(key, token=started["token"], **extra),
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    return response


def publish_later(conversation_id: str, text: str, delay: float = 0.3) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        conversation = Conversation.objects.get(pk=conversation_id)
        widget_svc.message_add_and_publish(conversation=conversation, text=text)

    def in_tenant() -> None:
        try:
            with tenant_context(tenant):
                run()
        finally:
            connections.close_all()  # this thread's own connections

    tenant = current
    thread = threading.Thread(target=in_tenant)
    thread.start()
    return thread


current: Any = None


@pytest.mark.django_db(transaction=True)
def test_published_message_reaches_its_stream_and_not_anothers(
    api_client: Client, channel_a: Channel, key_a: str
) -> None:
    global current
    current = channel_a.tenant
    mine = start(api_client, channel_a, key_a)
    other = start(api_client, channel_a, key_a)
    stream = sse_events(iter(open_stream(api_client, channel_a, key_a, mine).streaming_content))
    other_stream = sse_events(iter(open_stream(api_client, channel_a, key_a, other).streaming_content))
    publish_later(other["conversation_id"], "not for you", delay=0.1).join()
    thread = publish_later(mine["conversation_id"], "Ein Kollege antwortet: Ihr Paket ist unterwegs.")
    name, data, event_id = next(stream)
    thread.join()
    assert name == "message"
    assert data["text"].startswith("Ein Kollege") and data["role"] == "assistant"
    assert event_id == str(data["id"])
    rest = list(stream)  # the stream ends by itself after HUB_WIDGET_STREAM_SECONDS
    assert rest[-1][0] == "reconnect"
    other_events = list(other_stream)
    assert [d["text"] for n, d, _ in other_events if n == "message"] == ["not for you"]


@pytest.mark.django_db(transaction=True)
def test_reconnect_with_last_event_id_gets_the_missed_messages_first(
    api_client: Client, channel_a: Channel, key_a: str
) -> None:
    with tenant_context(channel_a.tenant):
        started = start(api_client, channel_a, key_a)
        conversation = Conversation.objects.get(pk=started["conversation_id"])
        first = widget_svc.message_add_and_publish(conversation=conversation, text="one")
        widget_svc.message_add_and_publish(conversation=conversation, text="two")  # while disconnected
    response = open_stream(api_client, channel_a, key_a, started, HTTP_LAST_EVENT_ID=str(first.id))
    try:
        name, data, _ = next(sse_events(iter(response.streaming_content)))
    finally:
        # Close what the test leaves unread, as a WSGI server does: a stream left to the garbage collector
        # ends its statement-class block wherever the collector runs, possibly inside another query.
        response.close()
    assert (name, data["text"]) == ("message", "two")


@pytest.mark.django_db(transaction=True)
def test_streams_per_process_are_capped(
    api_client: Client, channel_a: Channel, key_a: str, settings: Any
) -> None:
    settings.HUB_WIDGET_STREAMS_PER_PROCESS = 1
    started = start(api_client, channel_a, key_a)
    held = open_stream(api_client, channel_a, key_a, started)
    refused = api_client.get(
        f"/widget/v1/{channel_a.pk}/conversations/{started['conversation_id']}/stream",
        **headers(key_a, token=started["token"]),
    )
    assert refused.status_code == 503 and refused["Retry-After"]
    held.close()
    again = open_stream(api_client, channel_a, key_a, started)
    again.close()
    assert again.status_code == 200


def test_stream_paths_skip_the_admission_gate() -> None:
    assert _is_stream("/widget/v1/abc/conversations/def/stream")
    assert not _is_stream("/widget/v1/abc/conversations/def/messages")
    assert not _is_stream("/api/v1/conversations/def/stream")


@pytest.fixture
def busy() -> Iterator[tuple[AdmissionGate, BlockingApp]]:
    """A gate whose only work thread is busy with a request (and no waiting place)."""
    with busy_gate() as busy:
        yield busy


def test_a_stream_is_served_while_every_work_thread_is_busy(
    busy: tuple[AdmissionGate, BlockingApp],
) -> None:
    """A long-lived stream must not wait for (or hold) a work thread: it runs on its own server thread."""
    gate, _app = busy
    path = "/widget/v1/abc/conversations/def/stream"
    call, data = serve(gate, admission_environ(path, REQUEST_METHOD="GET"))
    assert call.status == "200 OK" and data == b"one two"
    refused, _ = serve(gate, admission_environ("/widget/v1/abc/conversations/def/messages"))
    assert refused.status.startswith("503")  # the widget's other calls are gated like any request
