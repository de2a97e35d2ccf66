"""Webhook rate buckets per sender behind a trusted proxy, and no fresh bucket from a spoofed header.

Issue 14: the per-address bucket used REMOTE_ADDR, so behind the ingress every vendor shared one bucket (one
flood starved all tenants' webhooks), and nothing may let a sender escape its bucket by writing
X-Forwarded-For. The requests go through the real view and the real token buckets in Redis.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from apps.integrations.resilience import BucketConfig
from apps.integrations.services import webhooks

pytestmark = pytest.mark.django_db
INGRESS = "10.0.0.5"


@pytest.fixture
def small_ip_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three deliveries per address, refilling far slower than the test runs."""
    monkeypatch.setattr(webhooks, "IP_RATE", BucketConfig(capacity=3, rate=0.001))


def _deliver(client: Client, **meta: str) -> int:
    url = f"/hooks/hubspot/{uuid.uuid4()}/"  # an unknown connection: 401 once past the address bucket
    return client.post(url, b"[]", content_type="application/json", **meta).status_code  # type: ignore[arg-type]


def test_behind_a_trusted_proxy_each_sender_has_its_own_bucket(
    client: Client, settings: Any, small_ip_bucket: None
) -> None:
    settings.HUB_TRUSTED_PROXIES = ["10.0.0.0/8"]
    flood = {"REMOTE_ADDR": INGRESS, "HTTP_X_FORWARDED_FOR": "192.0.2.1, 203.0.113.66"}
    assert [_deliver(client, **flood) for _ in range(4)] == [401, 401, 401, 429]
    # The flooder cannot get a fresh bucket by changing its own (leftmost) entry.
    assert _deliver(client, REMOTE_ADDR=INGRESS, HTTP_X_FORWARDED_FOR="192.0.2.2, 203.0.113.66") == 429
    # A vendor behind the same ingress is not starved by the flood.
    assert _deliver(client, REMOTE_ADDR=INGRESS, HTTP_X_FORWARDED_FOR="198.51.100.20") == 401


def test_without_a_trusted_proxy_forwarded_for_never_opens_a_new_bucket(
    client: Client, small_ip_bucket: None
) -> None:
    statuses = [
        _deliver(client, REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}") for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
