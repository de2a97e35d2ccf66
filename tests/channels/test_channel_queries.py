"""Statements per platform message in the worker: a user's later message finds its conversation without the
creation lock, and the event's "done" takes the row lock itself (issue 17's benchmark: 17 before, 13 now)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.chat.models import InboundEvent, InboundStatus
from apps.chat.services.channel_inbound import channel_inbound_process
from apps.core.context import tenant_context
from tests.channels.platforms import message, post, wire

pytestmark = pytest.mark.django_db(databases="__all__")


def test_a_users_later_message_costs_at_most_thirteen_statements(tenant_a: Any, sims: dict[str, Any]) -> None:
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    for text in ("Hallo", "What are your opening hours?"):
        post(Client(), w, message(w, text))
    with tenant_context(tenant_a):
        first, second = InboundEvent.objects.filter(channel_id=w.channel.id).order_by("created_at")
        assert channel_inbound_process(event_id=first.pk) == InboundStatus.DONE
        captured = [CaptureQueriesContext(connections[alias]) for alias in ("default", "region_eu")]
        for capture in captured:
            capture.__enter__()
        try:
            assert channel_inbound_process(event_id=second.pk) == InboundStatus.DONE
        finally:
            for capture in captured:
                capture.__exit__(None, None, None)
    control, region = (c.captured_queries for c in captured)
    assert len(control) <= 1, [q["sql"][:80] for q in control]  # the channel
    statements = [q["sql"] for q in region if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    # event, attempts, account, conversation, the turn (its 3), done, outbox lock + sequence + insert
    assert len(statements) <= 12, [s[:80] for s in statements]
    assert sum("pg_advisory_xact_lock" in s for s in statements) == 1  # the outbox's: no conversation lock
    assert not any("security_datakey" in s for s in statements)  # the active key version is cached
