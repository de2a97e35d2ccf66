"""The whole loop on real processes: each platform's simulator delivers a signed message to a real gunicorn,
a real Celery worker (queues default + outbox) runs the turn and delivers the reply, which the simulator
records — the text the hub stored, to the right recipient/thread. One worker, one web, all four platforms."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from apps.chat.models import Conversation, InboundEvent, InboundStatus, Message, Role
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.channels.platforms import KINDS, SLACK_CHANNEL, USER_PHONE, sent_texts, wait_for, wire
from tests.fixtures.processes import Web, Worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_each_platform_message_is_answered_through_the_real_web_and_worker(
    tenant_a: Tenant, sims: dict[str, Any], tmp_path: Path
) -> None:
    ca = sims["whatsapp"].ca_bundle or ""
    wired = {kind: wire(tenant_a, kind, sims[kind]) for kind in KINDS}
    web = Web(tmp_path / "web.log", ca_bundle=ca)
    worker = Worker(tmp_path / "worker.log", ca, queues="default,outbox", name="channels")
    web.start()
    worker.start()
    try:
        web.wait_ready(time.monotonic() + 60)
        for kind, w in wired.items():
            target = web.url + w.path
            if kind == "whatsapp":
                delivery = w.sim.deliver_message(target, from_=USER_PHONE, text="Hallo WhatsApp")
                assert delivery.status == 200, delivery
            elif kind == "slack":
                assert (
                    w.sim.deliver_message(target, "U0SIMUSER1", SLACK_CHANNEL, "Hallo Slack").status_code
                    == 200
                )
            elif kind == "teams":
                assert w.sim.deliver_message(target, "Hallo Teams").status_code == 200
            else:
                delivery = w.sim.deliver_message(target, from_=USER_PHONE, text="Hallo SMS")
                assert delivery.status == 200, delivery
        for kind, w in wired.items():
            wait_for(lambda w=w: len(sent_texts(w)) >= 1, seconds=60, what=f"{kind} reply; see {worker.log}")
        time.sleep(1)  # nothing more arrives: one reply each
        for kind, w in wired.items():
            with tenant_context(tenant_a):
                [event] = InboundEvent.objects.filter(channel_id=w.channel.id)
                assert event.status == InboundStatus.DONE
                conversation = Conversation.objects.get(channel_id=w.channel.id)
                reply = Message.objects.get(conversation=conversation, role=Role.ASSISTANT)
            assert sent_texts(w) == [reply.text], kind
    finally:
        worker.stop()
        web.stop()
