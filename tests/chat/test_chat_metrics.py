"""Chat turns, retrieval, LLM usage and rate-limit hits show up in /metrics with bounded labels."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.knowledge.demo import seed_demo_knowledge
from apps.tenants.models import Tenant
from tests.fixtures.chat import IssuedKey
from tests.fixtures.metrics import scrape, value

pytestmark = pytest.mark.django_db

JSON = "application/json"


def test_turns_are_counted_by_outcome_and_retrieval_is_timed(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    headers: dict[str, Any] = dict(api_key_a.headers)
    labels = {"tenant": "tenant-a", "region": "eu", "channel": "web", "locale": "en"}
    before = scrape()
    conversation = api_client.post("/api/v1/conversations", {}, content_type=JSON, **headers).json()
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    # No knowledge yet: a fallback. Then an answer from the demo knowledge base, and small talk.
    first = api_client.post(url, {"text": "Can I return an item?"}, content_type=JSON, **headers)
    assert first.json()["reply"]["intent"] == "unknown"
    seed_demo_knowledge([tenant_a])
    for text in ("How long do I have to return an item?", "Hello"):
        assert api_client.post(url, {"text": text}, content_type=JSON, **headers).status_code == 200
    after = scrape()

    def moved(sample: str, **extra: str) -> float:
        return value(after, sample, **extra) - value(before, sample, **extra)

    assert moved("hub_chat_turns_total", outcome="answered", **labels) == 2
    assert moved("hub_chat_turns_total", outcome="fallback", **labels) == 1
    assert moved("hub_chat_turn_duration_seconds_count", region="eu", channel="web", locale="en") == 3
    assert moved("hub_retrieval_duration_seconds_count", region="eu") == 2  # small talk skips it
    for sample in after["hub_chat_turns_total"]:
        assert conversation["id"] not in str(sample.labels)
