"""What the console tests share: chat turns and connections that are never called, query counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.chat.models import Conversation, Message
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from tests.fixtures.integrations import offline_connection


def turns(
    tenant: Tenant, *, outcomes: list[str], latencies: list[float] | None = None, age: timedelta | None = None
) -> Conversation:
    """A conversation with one assistant turn per outcome (fixed latencies), optionally back-dated."""
    with tenant_context(tenant):
        conversation = Conversation.objects.create(
            channel_id="00000000-0000-0000-0000-000000000001",
            channel_kind="whatsapp",
            locale="en",
            region="eu",
        )
        for i, outcome in enumerate(outcomes):
            question = Message.objects.create(conversation=conversation, role="user", text="q")
            Message.objects.create(
                conversation=conversation,
                role="assistant",
                text="a",
                reply_to=question,
                outcome=outcome,
                latency_ms=latencies[i] if latencies else 10.0,
            )
        if age is not None:
            then = timezone.now() - age
            Conversation.objects.filter(pk=conversation.pk).update(created_at=then)
            Message.objects.filter(conversation=conversation).update(created_at=then)
    return conversation


def servicenow(tenant: Tenant, name: str = "ServiceNow") -> Connection:
    """A connection that is never called (the console reads only the hub's own records of it)."""
    return offline_connection(tenant, "servicenow", name=name)


@contextmanager
def count_queries() -> Iterator[list[CaptureQueriesContext]]:
    """Capture the SQL of every database alias (control and regions)."""
    with ExitStack() as stack:
        yield [stack.enter_context(CaptureQueriesContext(connections[a])) for a in connections]


def page_queries(client: Client, path: str) -> int:
    """SQL statements one GET of `path` costs, over every database."""
    with count_queries() as contexts:
        assert client.get(path).status_code == 200
    return sum(len(c) for c in contexts)
