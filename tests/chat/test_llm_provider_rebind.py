"""Re-pointing a language-model provider must not send its stored API key elsewhere (issue 14).

The attacker manages channels in the tenant (or is another tenant's admin), moves the provider's base URL to a
listener they control and asks a question: the listener must see no request carrying the stored key.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.chat.models import LlmProviderConfig
from apps.chat.services.llm_config import llm_provider_save
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.tenants.models import Role, Tenant
from apps.tenants.services import membership_add
from tests.chat.helpers import FakeLLM, ask
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified
from tests.fixtures.chat import IssuedKey
from tests.fixtures.simulators import StartFake

pytestmark = pytest.mark.django_db

QUESTION = "Wie lange kann ich zurückgeben?"


@pytest.fixture
def listener(openai_server: StartFake) -> FakeLLM:
    """The attacker's OpenAI-compatible endpoint (another port: another origin)."""
    return openai_server(FakeLLM, api_key="sk-attacker-0000000000000000")


def form_data(config: LlmProviderConfig, **changes: Any) -> dict[str, Any]:
    data = {
        "name": config.name,
        "base_url": config.base_url,
        "model": config.model,
        "region": config.region,
        "endpoint_region": config.endpoint_region,
        "prompt_price_per_1k": "0",
        "completion_price_per_1k": "0",
        "enabled": "on",
        "api_key": "",
    }
    return data | changes


def edit_url(tenant: Tenant, config: LlmProviderConfig) -> str:
    return reverse("chat:llm-provider-edit", kwargs={"tenant_slug": tenant.slug, "pk": config.pk})


def saw_key(server: FakeLLM, key: str) -> bool:
    return any(key in " ".join(r.headers.values()) or key.encode() in r.body for r in server.requests)


def test_moving_the_base_url_in_the_console_needs_the_key_again(
    client: Client,
    alice: Any,
    tenant_a: Tenant,
    api_client: Client,
    api_key_a: IssuedKey,
    provider: LlmProviderConfig,
    llm: FakeLLM,
    listener: FakeLLM,
) -> None:
    login_verified(client, alice)
    response = client.post(edit_url(tenant_a, provider), form_data(provider, base_url=listener.base_url))
    assert response.status_code == 400
    assert "enter the API key again" in response.content.decode()
    with tenant_context(tenant_a):
        assert LlmProviderConfig.objects.get(pk=provider.pk).base_url == llm.base_url
    cache.clear()
    ask(api_client, api_key_a, QUESTION)
    assert listener.requests == []
    assert len(llm.calls("/v1/chat/completions")) == 1  # still answered by the endpoint the key is for

    # With the attacker's own key the change is saved; the stored key never reaches the listener.
    moved = client.post(
        edit_url(tenant_a, provider),
        form_data(provider, base_url=listener.base_url, api_key=listener.api_key),
    )
    assert moved.status_code == 302
    cache.clear()
    ask(api_client, api_key_a, "Wie lange habe ich Zeit für eine Rückgabe?")
    assert listener.calls("/v1/chat/completions")
    assert not saw_key(listener, llm.api_key)
    with tenant_context(tenant_a):
        event = AuditEvent.objects.filter(action="chat.llm_provider_updated").latest("seq")
    assert llm.api_key not in str(event.changes)


def test_a_base_url_moved_behind_the_services_back_gets_no_key(
    tenant_a: Tenant,
    api_client: Client,
    api_key_a: IssuedKey,
    provider: LlmProviderConfig,
    llm: FakeLLM,
    listener: FakeLLM,
) -> None:
    with tenant_context(tenant_a):
        LlmProviderConfig.objects.filter(pk=provider.pk).update(base_url=listener.base_url)
    cache.clear()
    reply = ask(api_client, api_key_a, QUESTION)
    assert reply["text"] != listener.reply  # answered offline
    assert listener.requests == []


def test_service_refuses_a_new_origin_without_the_key(
    alice: Any,
    tenant_a: Tenant,
    provider: LlmProviderConfig,
    listener: FakeLLM,
) -> None:
    data = {"name": provider.name, "endpoint_region": "eu", "base_url": listener.base_url, "model": "m"}
    with pytest.raises(ValidationFailed) as refused:
        llm_provider_save(tenant=tenant_a, actor=alice, config=provider, data=data)
    assert "api_key" in refused.value.errors
    with tenant_context(tenant_a):
        assert AuditEvent.objects.get(action="chat.llm_provider_repoint_refused").outcome == "denied"
    # The same origin with another path keeps the key (nothing leaves for a new host).
    same = {**data, "base_url": provider.base_url.removesuffix("/v1") + "/v2"}
    saved = llm_provider_save(tenant=tenant_a, actor=alice, config=provider, data=same)
    assert saved.api_key


def test_another_tenants_admin_gets_404(
    client: Client,
    tenant_a: Tenant,
    tenant_b: Tenant,
    provider: LlmProviderConfig,
    llm: FakeLLM,
    listener: FakeLLM,
) -> None:
    mallory = UserFactory.create(username="mallory")
    membership_add(tenant=tenant_b, user=mallory, role=Role.ADMIN)
    login_verified(client, mallory)
    data = form_data(provider, base_url=listener.base_url, api_key=listener.api_key)
    assert client.post(edit_url(tenant_a, provider), data).status_code == 404
    assert client.post(edit_url(tenant_b, provider), data).status_code == 404
    with tenant_context(tenant_a):
        assert LlmProviderConfig.objects.get(pk=provider.pk).base_url == llm.base_url


def test_plain_http_base_url_is_refused_when_https_is_required(
    settings: Any, alice: Any, tenant_a: Tenant
) -> None:
    settings.HUB_OUTBOUND_REQUIRE_HTTPS = True
    data = {"name": "m", "endpoint_region": "eu", "base_url": "http://llm.example.com/v1", "model": "m"}
    with pytest.raises(ValidationFailed) as refused:
        llm_provider_save(tenant=tenant_a, actor=alice, api_key="sk-1234", data=data)
    assert "https://" in str(refused.value.errors["base_url"])
