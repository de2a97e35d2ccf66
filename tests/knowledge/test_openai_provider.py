"""OpenAIProvider against a local OpenAI-compatible server: request shape, batching, checks, errors."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.knowledge.embeddings import EmbeddingError, OpenAIProvider
from apps.knowledge.models import EMBEDDING_DIMENSIONS
from tests.fakes.openai_server import FakeOpenAI, FakeRequest, FakeResponse, fake_vector
from tests.fixtures.simulators import StartFake

MODEL = "text-embedding-3-small"


@pytest.fixture
def server(openai_server: StartFake) -> FakeOpenAI:
    return openai_server(FakeOpenAI)


def provider(server: FakeOpenAI, **options: Any) -> OpenAIProvider:
    defaults = {"base_url": server.base_url, "model": MODEL, "api_key": server.api_key, "retry_backoff": 0}
    return OpenAIProvider(**{**defaults, **options})


def expected(text: str) -> np.ndarray:
    vector = np.array(fake_vector(text, EMBEDDING_DIMENSIONS), dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_request_shape_and_vectors(server: FakeOpenAI) -> None:
    vectors = provider(server).embed(["Wie setze ich mein Passwort zurück?", "Return policy"])
    (call,) = server.calls()
    assert (call.method, call.path) == ("POST", "/v1/embeddings")
    assert call.json() == {
        "model": MODEL,
        "input": ["Wie setze ich mein Passwort zurück?", "Return policy"],
        "dimensions": EMBEDDING_DIMENSIONS,
    }
    assert call.headers["authorization"] == f"Bearer {server.api_key}"
    assert call.headers["content-type"] == "application/json"
    # The fake answers out of order: rows are put back in input order by their index.
    assert vectors.shape == (2, EMBEDDING_DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(vectors[0], expected("Wie setze ich mein Passwort zurück?"), atol=1e-5)
    assert np.allclose(vectors[1], expected("Return policy"), atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(provider(server).embed_query("Return policy"), vectors[1], atol=1e-6)


def test_no_texts_no_request(server: FakeOpenAI) -> None:
    assert provider(server).embed([]).shape == (0, EMBEDDING_DIMENSIONS)
    assert server.calls() == []


def test_batches_keep_the_input_order(server: FakeOpenAI) -> None:
    texts = [f"text {i}" for i in range(5)]
    vectors = provider(server, batch_size=2).embed(texts)
    assert [call.json()["input"] for call in server.calls()] == [texts[0:2], texts[2:4], texts[4:5]]
    assert np.allclose(vectors, np.stack([expected(t) for t in texts]), atol=1e-5)


def test_model_id_names_model_and_size(server: FakeOpenAI) -> None:
    assert provider(server).model_id == f"openai:{MODEL}@{EMBEDDING_DIMENSIONS}"


def test_wrong_dimensions_are_refused() -> None:
    with FakeOpenAI(dimensions=1536) as server, pytest.raises(EmbeddingError, match="512 dimensions"):
        provider(server).embed(["a"])


def test_missing_or_extra_vectors_are_refused(server: FakeOpenAI) -> None:
    def one_vector(request: FakeRequest) -> FakeResponse:
        data = [{"object": "embedding", "index": 0, "embedding": fake_vector("x", 512)}]
        return FakeResponse.of_json(200, {"object": "list", "data": data, "model": MODEL})

    server.routes[("POST", "/v1/embeddings")] = one_vector
    with pytest.raises(EmbeddingError, match="answered 1 vectors for 2 texts"):
        provider(server).embed(["a", "b"])


def test_unexpected_shape(server: FakeOpenAI) -> None:
    server.fail_next(200, body=b'{"object": "list", "items": []}')
    with pytest.raises(EmbeddingError, match="unexpected shape"):
        provider(server).embed(["a"])


def test_malformed_json(server: FakeOpenAI) -> None:
    server.fail_next(200, body=b'{"data": [{"index": 0, "embedding": [0.1,')
    with pytest.raises(EmbeddingError, match="malformed JSON"):
        provider(server).embed(["a"])


def test_wrong_key_is_a_clear_error_without_the_key(server: FakeOpenAI) -> None:
    wrong = "sk-wrong-9d8c7b6a5f4e3d2c1b0a"
    with pytest.raises(EmbeddingError) as caught:
        provider(server, api_key=wrong).embed(["a"])
    message = str(caught.value)
    assert message == "embedding endpoint failed (HTTP 401): Incorrect API key provided: [redacted]."
    assert wrong not in message and server.api_key not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert len(server.calls()) == 1  # a refused key is not retried


def test_no_key_sends_no_authorization(server: FakeOpenAI) -> None:
    with pytest.raises(EmbeddingError, match="HTTP 401"):
        provider(server, api_key="").embed(["a"])
    assert "authorization" not in server.calls()[0].headers


def test_server_errors_are_retried_then_reported(server: FakeOpenAI) -> None:
    server.fail_next(500, count=5)
    with pytest.raises(EmbeddingError) as caught:
        provider(server, max_retries=2).embed(["a"])
    assert str(caught.value) == "embedding endpoint failed (HTTP 500): planned failure 500 after 3 attempts"
    assert len(server.calls()) == 3


def test_a_passing_outage_is_absorbed(server: FakeOpenAI) -> None:
    server.fail_next(503)
    vectors = provider(server).embed(["a"])
    assert np.allclose(vectors[0], expected("a"), atol=1e-5)
    assert len(server.calls()) == 2


def test_rate_limit_honours_a_short_retry_after(server: FakeOpenAI) -> None:
    server.fail_next(429, headers={"Retry-After": "0"})
    assert provider(server).embed(["a"]).shape == (1, EMBEDDING_DIMENSIONS)
    assert len(server.calls()) == 2


def test_rate_limit_with_a_long_retry_after_fails_at_once(server: FakeOpenAI) -> None:
    server.fail_next(429, headers={"Retry-After": "3600"})
    with pytest.raises(EmbeddingError, match=r"rate limited \(HTTP 429\)"):
        provider(server, max_retry_wait=5).embed(["a"])
    assert len(server.calls()) == 1


def test_client_errors_are_not_retried(server: FakeOpenAI) -> None:
    server.fail_next(400, count=3)
    with pytest.raises(EmbeddingError, match=r"HTTP 400"):
        provider(server).embed(["a"])
    assert len(server.calls()) == 1


def test_unreachable_endpoint(server: FakeOpenAI) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EmbeddingError, match="unreachable"):
        provider(server, base_url=f"http://127.0.0.1:{port}/v1").embed(["a"])


@pytest.mark.parametrize(
    "options",
    [{"model": ""}, {"base_url": ""}, {"batch_size": 0}, {"batch_size": "many"}, {"timeout": 0}],
)
def test_bad_options_fail_loudly(server: FakeOpenAI, options: dict[str, Any]) -> None:
    with pytest.raises(ImproperlyConfigured, match="HUB_EMBEDDING_OPTIONS"):
        provider(server, **options)


def test_unknown_route_answers_404(server: FakeOpenAI) -> None:
    with pytest.raises(EmbeddingError, match=r"HTTP 404\): Unknown request URL"):
        provider(server, base_url=server.base_url + "/nope").embed(["a"])
