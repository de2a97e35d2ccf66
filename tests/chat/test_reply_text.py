"""`reply.text` is plain text: markup in a knowledge chunk (indexed before bodies were checked, or planted in
the database) never reaches a channel as live HTML, and the schema says so."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from apps.chat.models import Message
from apps.core.context import tenant_context
from apps.knowledge.demo import seed_demo_knowledge
from apps.knowledge.models import Chunk, KnowledgeBase
from apps.knowledge.services import kb_import
from apps.tenants.models import Tenant
from tests.fixtures.chat import IssuedKey
from tests.knowledge.markup import live_markup

pytestmark = pytest.mark.django_db

TAG = re.compile(r"<[A-Za-z/!?]")


def test_html_in_a_knowledge_chunk_is_not_live_in_the_reply(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    seed_demo_knowledge([tenant_a])
    body = "# Espresso machine warranty\n\nThe espresso machine has a two-year warranty."
    line = {"key": "warranty-espresso", "locale": "en", "region": None, "title": "Espresso machine warranty",
            "status": "published", "body": body}  # fmt: skip
    with tenant_context(tenant_a):
        kb_import(kb=KnowledgeBase.objects.get(), lines=[json.dumps(line)], index_now=True)
        # A chunk as an older import stored it: HTML, handlers and encoded tags in the text and the title.
        planted = Chunk.objects.filter(article_key="warranty-espresso").update(
            text="The espresso machine has a two-year warranty.<script>alert(1)</script>"
            '<img src=x onerror="alert(2)"> &lt;iframe src=javascript:alert(3)&gt;&lt;/iframe&gt;'
            "<svg onload=alert(4)></svg> <a href='javascript:alert(5)'>Details</a>",
            title="Warranty <img src=x onerror=alert(6)>",
        )
    assert planted
    headers = dict(api_key_a.headers)
    started = api_client.post("/api/v1/conversations", {}, content_type="application/json", **headers)
    response = api_client.post(
        f"/api/v1/conversations/{started.json()['id']}/messages",
        {"text": "How long is the warranty on the espresso machine?"},
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 200, response.content
    reply: dict[str, Any] = response.json()["reply"]
    assert reply["intent"] == "knowledge" and "two-year warranty" in reply["text"]
    assert "Details" in reply["text"]
    for text in (reply["text"], reply["citations"][0]["title"]):
        assert not TAG.search(text), text
        assert live_markup(text) == [] and "alert(" not in text
    with tenant_context(tenant_a):
        stored = Message.objects.filter(role="assistant").latest("id").text
    assert stored == reply["text"]


def test_schema_documents_reply_text_as_plain_text(api_client: Client) -> None:
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    description = schema["components"]["schemas"]["Reply"]["properties"]["text"]["description"]
    assert description.startswith("The reply as plain UTF-8 text, never HTML")
