"""Webhooks with the broker or Redis away: never lost, never a 500, answered within the publish deadline.

The verified notification is stored first (a queued sync run, committed before the answer); its task is
published after the commit. A stalled broker makes the publish fail within its bound (HUB_BROKER_* settings)
and the vendor still gets its 2xx; the beat sweep (sync_requeue_stale) publishes the run once the broker is
back. Without the database nothing can be stored: 503 with Retry-After, so the vendors that retry (HubSpot,
Salesforce) do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from apps.integrations.models import Connection, RunStatus
from apps.integrations.services.sync import sync_requeue_stale
from apps.tenants.models import Tenant
from tests.chaos.faults import (
    MARGIN_S,
    PUBLISH_BOUND_S,
    StallProxy,
    broker_messages,
    publishing_through_a_proxy,
)
from tests.fixtures.integrations import ORG_ID
from tests.webhooks.helpers import (
    hs_event,
    outbound_message,
    post_hubspot,
    post_salesforce,
    post_servicenow,
    runs,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker_proxy() -> Iterator[StallProxy]:
    with publishing_through_a_proxy("sync") as proxy:
        yield proxy


def _sweep_later() -> int:
    return sync_requeue_stale(now=timezone.now() + timedelta(seconds=settings.HUB_SYNC_REQUEUE_SECONDS + 1))


def test_webhooks_are_stored_and_answered_while_the_broker_is_stalled(
    client: Client,
    tenant_a: Tenant,
    hubspot: Connection,
    salesforce: tuple[Connection, str],
    servicenow: tuple[Connection, str],
    broker_proxy: StallProxy,
) -> None:
    sf_connection, token = salesforce
    sn_connection, secret = servicenow
    broker_proxy.stall()
    started = time.monotonic()
    assert post_hubspot(client, hubspot, [hs_event(1)]).status_code == 204
    body = outbound_message(ORG_ID, [("04l5g00000AAAA1", "Contact", "003A")])
    assert post_salesforce(client, sf_connection, token, body).status_code == 200
    event = {"id": "inc-1", "table": "incident"}
    assert post_servicenow(client, sn_connection, secret, event).status_code == 204
    # Each answer waited for at most one bounded publish (plus the request itself).
    assert time.monotonic() - started < 3 * (PUBLISH_BOUND_S + MARGIN_S)
    stored = [*runs(tenant_a, hubspot), *runs(tenant_a, sf_connection), *runs(tenant_a, sn_connection)]
    assert [(r.stream, r.status) for r in stored] == [
        ("contacts", RunStatus.QUEUED),
        ("contacts", RunStatus.QUEUED),
        ("tickets", RunStatus.QUEUED),
    ]
    assert broker_messages("sync") == []  # nothing reached the broker

    # While the broker is still away the sweep publishes nothing, and fails nothing.
    assert _sweep_later() == 0
    broker_proxy.resume()
    assert sync_requeue_stale() == 0  # not stale yet: the runs were just (re)stamped
    assert _sweep_later() == 3
    queued = broker_messages("sync")
    assert sorted(m["kwargs"]["run_id"] for m in queued) == sorted(r.pk for r in stored)  # type: ignore[index]
    assert {m["task"] for m in queued} == {"apps.integrations.tasks.sync_stream_task"}
    # A sweep runs once per interval per run: a second one right away publishes nothing more.
    assert _sweep_later() == 0
    assert len(broker_messages("sync")) == 3


def test_webhooks_are_accepted_with_redis_stalled(
    client: Client, tenant_a: Tenant, hubspot: Connection, broker_proxy: StallProxy
) -> None:
    """Rate limits fail open, de-duplication is skipped (the queued-run check coalesces), nothing hangs."""
    stalled_redis = broker_proxy.url_for(settings.REDIS_URL)
    broker_proxy.stall()
    with mock.patch.object(settings, "REDIS_URL", stalled_redis):
        started = time.monotonic()
        assert post_hubspot(client, hubspot, [hs_event(5)]).status_code == 204
        assert post_hubspot(client, hubspot, [hs_event(5)]).status_code == 204  # a redelivery
        assert time.monotonic() - started < 2 * (PUBLISH_BOUND_S + MARGIN_S + 2.0)
    assert [(r.stream, r.status) for r in runs(tenant_a, hubspot)] == [("contacts", RunStatus.QUEUED)]


def test_database_unavailable_is_503_with_retry_after(client: Client, hubspot: Connection) -> None:
    with mock.patch(
        "apps.integrations.views.webhooks.webhook_connection_find", side_effect=OperationalError("gone")
    ):
        response = post_hubspot(client, hubspot, [hs_event(9)])
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
