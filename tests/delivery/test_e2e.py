"""A later message on real processes: stored and delivered in this process's committed transaction, sent to
WhatsApp by a real Celery worker (the outbox kick on commit), and read by an API client from a real gunicorn —
its event stream (ungated, capped, bounded) and `?after=` poll."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from apps.chat.models import Conversation
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from connectors.whatsapp.simulator import WhatsAppSimulator
from tests.channels.platforms import USER_PHONE, sent_texts, wait_for, wire
from tests.delivery.helpers import agent_says
from tests.fixtures.chat import issue_key, sse_events, web_channel
from tests.fixtures.processes import Web, Worker
from tests.fixtures.simulators import StartSimulator

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_agent_reply_reaches_whatsapp_through_a_real_worker_and_the_api_through_a_real_server(
    tenant_a: Tenant, simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = simulator(WhatsAppSimulator)
    sim.auto_status = False
    wired = wire(tenant_a, "whatsapp", sim)
    key = issue_key(web_channel(tenant_a, name="Website"))
    ca = sim.ca_bundle or ""
    web = Web(tmp_path / "web.log", ca_bundle=ca, env={"HUB_WIDGET_STREAM_SECONDS": "20"})
    worker = Worker(tmp_path / "worker.log", ca, queues="default,outbox", name="delivery")
    web.start()
    worker.start()
    try:
        web.wait_ready(time.monotonic() + 60)
        # WhatsApp: the customer writes, the bot answers (through the worker), then an agent replies.
        assert sim.deliver_message(web.url + wired.path, from_=USER_PHONE, text="Hallo").status == 200
        wait_for(lambda: len(sent_texts(wired)) == 1, seconds=60, what=f"the bot's reply; see {worker.log}")
        with tenant_context(tenant_a):
            conversation = Conversation.objects.get(channel_id=wired.channel.id)
            agent_says(conversation, "Ihr Paket ist unterwegs.")
        wait_for(lambda: len(sent_texts(wired)) == 2, seconds=60, what=f"the agent's reply; see {worker.log}")
        assert sent_texts(wired)[1] == "Anna: Ihr Paket ist unterwegs."
        assert sim.sent()[1]["to"] == USER_PHONE.lstrip("+")

        # The chat API: a stream open on the real server receives the agent's reply as it is stored.
        auth = {"Authorization": f"Bearer {key.plaintext}"}
        created = requests.post(f"{web.url}/api/v1/conversations", json={}, headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        api_conversation = created.json()["id"]
        received: list[tuple[str, Any, str]] = []
        opened = threading.Event()

        def listen() -> None:
            with requests.get(
                f"{web.url}/api/v1/conversations/{api_conversation}/events",
                headers={**auth, "Accept": "text/event-stream"},
                stream=True,
                timeout=30,
            ) as stream:
                assert stream.status_code == 200
                chunks = stream.iter_content(chunk_size=None)
                opened.set()
                for event in sse_events(chunks):
                    received.append(event)
                    if event[0] == "message":
                        return

        listener = threading.Thread(target=listen)
        listener.start()
        assert opened.wait(15)
        time.sleep(0.5)  # subscribed before the stream's first bytes: give the server its moment
        started = time.monotonic()
        with tenant_context(tenant_a):
            stored, delivery = agent_says(
                Conversation.objects.get(pk=api_conversation), "Live aus dem Ticket."
            )
        listener.join(20)
        assert not listener.is_alive()
        name, data, event_id = received[-1]
        assert (name, data["role"], data["author"], data["text"]) == (
            "message",
            "agent",
            "Anna",
            "Live aus dem Ticket.",
        )
        assert event_id == str(stored.id) and delivery.route == "stream"
        assert time.monotonic() - started < 5
        page = requests.get(
            f"{web.url}/api/v1/conversations/{api_conversation}/messages?after=0", headers=auth, timeout=10
        )
        assert [m["text"] for m in page.json()["messages"] if m["role"] == "agent"] == [
            "Live aus dem Ticket."
        ]
        assert json.loads(page.content)["has_more"] is False
    finally:
        worker.stop()
        web.stop()
