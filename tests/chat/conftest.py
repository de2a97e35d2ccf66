"""Chat tests: channels and keys come from tests/fixtures/chat.py; here a tiny Salesforce simulator (for the
ticket and lead actions) and a fake language model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from apps.chat.models import LlmProviderConfig
from apps.chat.services.llm_config import llm_provider_save
from apps.knowledge.demo import seed_demo_knowledge
from apps.tenants.models import Tenant
from tests.chat.helpers import FakeLLM, llm_settings
from tests.fixtures.simulators import TINY, StartFake


@pytest.fixture
def sf_counts() -> Mapping[str, int]:
    return TINY


@pytest.fixture
def demo_kb_a(tenant_a: Tenant) -> None:
    """The demo help center in tenant A, to answer questions from (with citations)."""
    seed_demo_knowledge([tenant_a])


@pytest.fixture
def llm(openai_server: StartFake) -> FakeLLM:
    return openai_server(FakeLLM)


@pytest.fixture
def provider(tenant_a: Tenant, alice: Any, llm: FakeLLM) -> LlmProviderConfig:
    """Tenant A's language model: `llm`, with prices; the demo knowledge to answer from."""
    seed_demo_knowledge([tenant_a])
    return llm_provider_save(tenant=tenant_a, actor=alice, api_key=llm.api_key, data=llm_settings(llm))
