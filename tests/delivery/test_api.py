"""A later message reaches web and API channels: the chat API's `GET .../messages?after=` (cursor pages) and
event stream (Server-Sent Events, Last-Event-ID, heartbeat, bounded, capped), the web widget's stream and
`?after=`; another tenant's or channel's conversation is a 404, a bad cursor a 400 with a message."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from apps.chat.models import Channel, Conversation, Role
from apps.core.context import tenant_context
from tests.chat.widget_support import headers as widget_headers
from tests.chat.widget_support import start as widget_start
from tests.chat.widget_support import widget_enable
from tests.delivery.helpers import agent_says
from tests.fixtures.chat import IssuedKey, issue_key, sse_events, web_channel
from tests.foundation.admission import environ as admission_environ
from tests.foundation.admission import gate, serve

pytestmark = pytest.mark.django_db

JSON = "application/json"


@pytest.fixture(autouse=True)
def short_streams(settings: Any) -> None:
    settings.HUB_WIDGET_STREAM_SECONDS = 3
    settings.HUB_WIDGET_HEARTBEAT_SECONDS = 1


def start(client: Client, key: IssuedKey) -> Conversation:
    response = client.post("/api/v1/conversations", {}, content_type=JSON, **key.headers)
    assert response.status_code == 201, response.content
    return Conversation.objects.get(pk=response.json()["id"])


def url(conversation: Any, tail: str = "messages") -> str:
    return f"/api/v1/conversations/{conversation.pk}/{tail}"


def agent_later(tenant: Any, conversation: Conversation, text: str, delay: float = 0.3) -> threading.Thread:
    """An agent's reply stored and delivered from another thread while a stream is open."""

    def run() -> None:
        time.sleep(delay)
        try:
            with tenant_context(tenant):
                agent_says(conversation, text)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def pushed_agent_reply(
    response: Any, tenant: Any, conversation: Conversation, text: str
) -> tuple[Iterator[tuple[str, Any, str]], Any, str]:
    """Store an agent's reply while `response` streams: its next event must be that message, as an agent's
    (Anna's). Returns the rest of the stream, the message's data and the event id."""
    assert response.status_code == 200
    stream = sse_events(iter(response.streaming_content))
    thread = agent_later(tenant, conversation, text)
    name, data, event_id = next(stream)
    thread.join()
    assert (name, data["role"], data["author"], data["text"]) == ("message", "agent", "Anna", text)
    return stream, data, event_id


def test_poll_returns_later_messages_after_the_cursor_with_role_and_author(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
        first, delivery = agent_says(conversation, "Hallo, hier ist Anna vom Support.")
        second, _ = agent_says(conversation, "Ihr Paket kommt morgen.", author="Ben")
        notice, _ = agent_says(
            conversation, "Sie sind wieder beim Assistenten.", author="", role=Role.ASSISTANT
        )
    assert delivery.route == "stream"
    response = api_client.get(url(conversation), **api_key_a.headers)
    assert response.status_code == 200, response.content
    page = response.json()
    assert [(m["id"], m["role"], m["author"], m["text"]) for m in page["messages"]] == [
        (first.id, "agent", "Anna", "Hallo, hier ist Anna vom Support."),
        (second.id, "agent", "Ben", "Ihr Paket kommt morgen."),
        (notice.id, "assistant", "", "Sie sind wieder beim Assistenten."),
    ]
    assert page["next_after"] == notice.id and page["has_more"] is False
    assert all(m["created_at"] and m["citations"] == [] for m in page["messages"])
    later = api_client.get(url(conversation) + f"?after={first.id}", **api_key_a.headers).json()
    assert [m["id"] for m in later["messages"]] == [second.id, notice.id]
    none = api_client.get(url(conversation) + f"?after={notice.id}", **api_key_a.headers).json()
    assert none == {"messages": [], "next_after": notice.id, "has_more": False}


def test_poll_pages_with_limit_and_next_after(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
        ids = [agent_says(conversation, f"Nachricht {n}")[0].id for n in range(5)]
    seen: list[int] = []
    after = 0
    while True:
        page = api_client.get(url(conversation) + f"?after={after}&limit=2", **api_key_a.headers).json()
        seen += [m["id"] for m in page["messages"]]
        after = page["next_after"]
        if not page["has_more"]:
            break
    assert seen == ids


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "99999999999999999999", "١٢", " 1"])
def test_a_bad_cursor_or_limit_is_a_400_with_a_message(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any, bad: str
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
    for name in ("after", "limit"):
        response = api_client.get(url(conversation), {name: bad}, **api_key_a.headers)
        assert response.status_code == 400, (name, bad, response.content)
        assert "whole number" in response.json()[name][0]
    assert api_client.get(url(conversation), {"limit": "101"}, **api_key_a.headers).status_code == 400
    assert api_client.get(url(conversation), {"limit": "0"}, **api_key_a.headers).status_code == 400


def test_another_tenants_or_channels_conversation_is_a_404_on_both_endpoints(
    api_client: Client, api_key_a: IssuedKey, api_key_b: IssuedKey, tenant_a: Any, channel_a: Channel
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
        agent_says(conversation, "Nur für A.")
    other_channel_key = issue_key(web_channel(tenant_a, name="Second site"))
    for key in (api_key_b, other_channel_key):
        for tail in ("messages", "events"):
            response = api_client.get(url(conversation, tail), **key.headers)
            assert response.status_code == 404, (tail, response.content)
            assert b"Nur f" not in response.content
    for tail in ("messages", "events"):
        assert (
            api_client.get(f"/api/v1/conversations/not-a-uuid/{tail}", **api_key_a.headers).status_code == 404
        )
        assert api_client.get(url(conversation, tail)).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_event_stream_pushes_an_agent_reply_as_it_is_stored(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
    response: Any = api_client.get(
        url(conversation, "events"), HTTP_ACCEPT="text/event-stream", **api_key_a.headers
    )
    try:
        stream, data, event_id = pushed_agent_reply(response, tenant_a, conversation, "Live von Anna.")
        assert response["Content-Type"].startswith("text/event-stream")
        assert event_id == str(data["id"])
        rest = list(stream)  # bounded: ends by itself with a reconnect event
        assert rest[-1] == ("reconnect", {"after": data["id"]}, "")
    finally:
        response.close()


@pytest.mark.django_db(transaction=True)
def test_the_event_stream_resumes_after_last_event_id_and_sends_heartbeats(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
        first, _ = agent_says(conversation, "Eins.")
        second, _ = agent_says(conversation, "Zwei (verpasst).")
    response: Any = api_client.get(
        url(conversation, "events"), HTTP_LAST_EVENT_ID=str(first.id), **api_key_a.headers
    )
    try:
        raw = b"".join(response.streaming_content).decode()  # 3 s: the missed message, heartbeats, the end
    finally:
        response.close()
    events = list(sse_events(iter([raw])))
    assert [(n, d.get("id")) for n, d, _ in events if n == "message"] == [("message", second.id)]
    assert ": keep-alive" in raw and raw.startswith("retry: ")
    assert events[-1][0] == "reconnect"


@pytest.mark.django_db(transaction=True)  # closing a stream ends the request (Django closes connections)
def test_the_event_stream_refuses_beyond_the_process_cap(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any, settings: Any
) -> None:
    settings.HUB_WIDGET_STREAMS_PER_PROCESS = 1
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
    first = api_client.get(url(conversation, "events"), **api_key_a.headers)
    try:
        assert first.status_code == 200
        second = api_client.get(url(conversation, "events"), **api_key_a.headers)
        assert second.status_code == 503 and second["Retry-After"] == "5"
        assert "Too many open streams" in second.json()["detail"]
    finally:
        first.close()
    third = api_client.get(url(conversation, "events"), **api_key_a.headers)  # the slot was given back
    try:
        assert third.status_code == 200
    finally:
        third.close()


def test_the_events_after_parameter_is_checked(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
    response = api_client.get(url(conversation, "events"), {"after": "x"}, **api_key_a.headers)
    assert response.status_code == 400 and "whole number" in response.json()["after"][0]


@pytest.mark.django_db(transaction=True)
def test_the_widget_stream_and_after_page_get_the_agent_reply(
    api_client: Client, channel_a: Channel, tenant_a: Any
) -> None:
    key = widget_enable(channel_a)
    started = widget_start(api_client, channel_a, key)
    with tenant_context(tenant_a):
        conversation = Conversation.objects.get(pk=started["conversation_id"])
    base = f"/widget/v1/{channel_a.pk}/conversations/{started['conversation_id']}"
    response: Any = api_client.get(f"{base}/stream", **widget_headers(key, token=started["token"]))
    try:
        pushed_agent_reply(response, tenant_a, conversation, "Anna antwortet im Widget.")
    finally:
        response.close()
    page = api_client.get(f"{base}/messages?after=0", **widget_headers(key, token=started["token"])).json()
    assert [(m["role"], m["author"], m["text"]) for m in page["messages"]] == [
        ("agent", "Anna", "Anna antwortet im Widget.")
    ]


def test_the_openapi_schema_documents_both_endpoints(api_client: Client) -> None:
    schema = api_client.get("/api/schema/?format=json").json()
    messages = schema["paths"]["/api/v1/conversations/{conversation_id}/messages"]
    assert messages["get"]["operationId"] == "message_list"
    assert {p["name"] for p in messages["get"]["parameters"]} >= {"after", "limit"}
    assert set(messages["get"]["responses"]) >= {"200", "400", "404"}
    assert messages["post"]["operationId"] == "message_create"  # the turn is still there
    events = schema["paths"]["/api/v1/conversations/{conversation_id}/events"]["get"]
    assert events["operationId"] == "conversation_events"
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert {p["name"] for p in events["parameters"]} >= {"after", "Last-Event-ID"}


def test_an_event_stream_is_served_while_every_work_thread_is_busy() -> None:
    """Like the widget's stream, the API's event stream must not wait for (or hold) a gthread work thread;
    the conversation's other calls are gated like any request."""
    entered, release = threading.Event(), threading.Event()

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        if env["PATH_INFO"] == "/api/v1/conversations":  # the request holding the only work thread
            entered.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    g = gate(app)
    holder = threading.Thread(target=serve, args=(g, admission_environ()))
    holder.start()
    try:
        assert entered.wait(5)
        path = "/api/v1/conversations/0b7c2a6e-9d7f-4a43-9f44-2d1c3c6f1a10/events"
        call, data = serve(g, admission_environ(path, REQUEST_METHOD="GET"))
        assert call.status == "200 OK" and data == b"ok"
        refused, _ = serve(g, admission_environ(path.replace("/events", "/messages"), REQUEST_METHOD="GET"))
        assert refused.status.startswith("503")
    finally:
        release.set()
        holder.join(5)


def test_the_poll_costs_the_same_queries_for_one_message_or_fifty(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any, django_assert_max_num_queries: Any
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
        agent_says(conversation, "Eins.")
    api_client.get(url(conversation), **api_key_a.headers)  # warm caches (key lookup, policies)
    with django_assert_max_num_queries(8) as one:
        api_client.get(url(conversation), **api_key_a.headers)
    with tenant_context(tenant_a):
        for n in range(49):
            agent_says(conversation, f"Nachricht {n}.")
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = api_client.get(url(conversation), **api_key_a.headers).json()
    assert len(page["messages"]) == 50


@pytest.mark.django_db(transaction=True)
def test_a_garbage_last_event_id_streams_from_now_on(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Any
) -> None:
    with tenant_context(tenant_a):
        conversation = start(api_client, api_key_a)
        agent_says(conversation, "Alt.")
    response: Any = api_client.get(
        url(conversation, "events"), HTTP_LAST_EVENT_ID="x" * 500, **api_key_a.headers
    )
    try:
        assert response.status_code == 200
        events = list(sse_events(iter(response.streaming_content)))
    finally:
        response.close()
    assert [name for name, _, _ in events] == ["reconnect"]  # nothing replayed, no error


def test_a_key_without_the_chat_scope_is_refused(
    api_client: Client, channel_a: Channel, tenant_a: Any
) -> None:
    chat = issue_key(channel_a, name="chat")
    transcripts_only = issue_key(channel_a, name="reader", scopes=["transcripts"])
    with tenant_context(tenant_a):
        conversation = start(api_client, chat)
    for tail in ("messages", "events"):
        assert api_client.get(url(conversation, tail), **transcripts_only.headers).status_code == 403
