"""A capture committed while the broker is stalled stays committed: the kick fails within its bound, quietly.

The message is in the database; the beat relay (`outbox_relay_due`) delivers it once the broker is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.db import transaction

from apps.core.context import tenant_context
from apps.integrations.models import Connection, OutboxMessage, OutboxStatus
from apps.integrations.services.dispatch import _relay_key, outbox_relay_queue
from apps.integrations.services.outbox import outbox_enqueue
from apps.tenants.models import Tenant
from tests.chaos.faults import (
    MARGIN_S,
    PUBLISH_BOUND_S,
    StallProxy,
    broker_messages,
    publishing_through_a_proxy,
)
from tests.fixtures.outbox import lead

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stalled_broker() -> Iterator[StallProxy]:
    with publishing_through_a_proxy("outbox") as proxy:
        proxy.stall()
        yield proxy


def test_capture_commits_and_the_relay_queues_it_when_the_broker_returns(
    tenant_a: Tenant, sf_conn: Connection, stalled_broker: StallProxy
) -> None:
    alias = tenant_a.home_region.db_alias
    started = time.monotonic()
    with tenant_context(tenant_a), transaction.atomic(using=alias):
        message = outbox_enqueue(connection=sf_conn, stream="leads", payload=lead(1), ordering_key="c1")
    assert time.monotonic() - started < PUBLISH_BOUND_S + MARGIN_S
    with tenant_context(tenant_a):
        assert OutboxMessage.objects.get(pk=message.pk).status == OutboxStatus.PENDING
    # The coalescing marker was dropped, so the next kick or beat tick queues a relay at once.
    assert cache.get(_relay_key(tenant_a.id, sf_conn.pk)) is None
    assert broker_messages("outbox") == []
    stalled_broker.resume()
    assert outbox_relay_queue(tenant_id=tenant_a.id, connection_id=sf_conn.pk)
    assert [m["kwargs"] for m in broker_messages("outbox")] == [
        {"tenant_id": tenant_a.id, "connection_id": str(sf_conn.pk)}
    ]
