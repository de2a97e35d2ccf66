"""The OpenAI-compatible embedding provider's outbound rules (issue 14): no redirects, https if required."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.knowledge.embeddings import EmbeddingError, OpenAIProvider
from tests.fakes.openai_server import FakeOpenAI
from tests.fixtures.simulators import StartFake


@pytest.fixture
def endpoint(openai_server: StartFake) -> FakeOpenAI:
    return openai_server(FakeOpenAI)


@pytest.fixture
def internal(openai_server: StartFake) -> FakeOpenAI:
    return openai_server(FakeOpenAI)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_with_the_api_key(
    endpoint: FakeOpenAI, internal: FakeOpenAI, status: int
) -> None:
    endpoint.fail_next(status, body=b"", headers={"Location": f"{internal.base_url}/embeddings"})
    provider = OpenAIProvider(base_url=endpoint.base_url, model="m", api_key=endpoint.api_key, max_retries=0)
    with pytest.raises(EmbeddingError, match=f"HTTP {status}"):
        provider.embed(["hello"])
    assert internal.requests == []


def test_plain_http_base_url_is_refused_when_https_is_required(settings: Any) -> None:
    settings.HUB_OUTBOUND_REQUIRE_HTTPS = True
    with pytest.raises(ImproperlyConfigured, match="must be https"):
        OpenAIProvider(base_url="http://embeddings.example.com/v1", model="m")
    OpenAIProvider(base_url="https://embeddings.example.com/v1", model="m")


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ImproperlyConfigured, match="http"):
        OpenAIProvider(base_url="file:///etc", model="m")
