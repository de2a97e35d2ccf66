"""Handoff tests: an offline ServiceNow connection per tenant (the in-process tests never call it: the
ticket thread is scripted, `tickets`), and a record of every later message delivered."""

from __future__ import annotations

from typing import Any

import pytest

from apps.chat.services import delivery, handoff_thread
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.services.webhooks import connection_webhook_secret_rotate
from apps.tenants.models import Tenant
from connectors.base import Cursor
from tests.fixtures.integrations import offline_connection
from tests.handoff.support import FakeTicket


@pytest.fixture
def sn_a(tenant_a: Tenant) -> tuple[Connection, str]:
    """Tenant A's ServiceNow connection and its webhook secret."""
    connection = offline_connection(tenant_a, "servicenow")
    with tenant_context(tenant_a):
        secret = connection_webhook_secret_rotate(connection=connection, actor=None)
    return connection, secret


@pytest.fixture
def sn_b(tenant_b: Tenant) -> tuple[Connection, str]:
    connection = offline_connection(tenant_b, "servicenow")
    with tenant_context(tenant_b):
        secret = connection_webhook_secret_rotate(connection=connection, actor=None)
    return connection, secret


@pytest.fixture
def tickets(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[Any, str], FakeTicket]:
    """Scripted vendor tickets by (connection id, vendor id): `tickets[conn.pk, "sys1"] = FakeTicket("sys1")`.
    A handoff reads the one of its own connection only."""
    found: dict[tuple[Any, str], FakeTicket] = {}

    def read(connection: Connection, handoff: Any) -> Any:
        return found[connection.pk, handoff.ticket_vendor_id].read(Cursor.from_json(handoff.thread_cursor))

    monkeypatch.setattr(handoff_thread, "_read_thread", read)
    return found


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str]]:
    """Every message handed to delivery.message_deliver: (conversation id, message id, text)."""
    calls: list[tuple[str, int, str]] = []
    original = delivery.message_deliver

    def record(*, conversation: Any, message: Any) -> Any:
        calls.append((str(conversation.pk), message.pk, message.text))
        return original(conversation=conversation, message=message)

    monkeypatch.setattr(delivery, "message_deliver", record)
    return calls
