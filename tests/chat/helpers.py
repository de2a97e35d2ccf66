"""What several chat test modules do: start a conversation, send a turn, ask a question; a fake LLM and its
provider settings."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tests.fakes.openai_server import FakeOpenAI, FakeRequest, FakeResponse
from tests.fixtures.chat import IssuedKey

JSON = "application/json"


def start(client: Client, key: IssuedKey, **body: Any) -> dict[str, Any]:
    """Start a conversation (201) and return it."""
    response = client.post("/api/v1/conversations", body, content_type=JSON, **key.headers)
    assert response.status_code == 201, response.content
    return dict(response.json())


def say(client: Client, key: IssuedKey, conversation_id: str, text: str, **headers: Any) -> Any:
    """Send one turn; the response, whatever it is."""
    return client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        {"text": text},
        content_type=JSON,
        **key.headers,
        **headers,
    )


def ask(client: Client, key: IssuedKey, text: str, *, locale: str = "de") -> dict[str, Any]:
    """Ask `text` in a new conversation in `locale`; the reply (the turn must succeed)."""
    conversation = start(client, key, locale=locale)
    response = say(client, key, conversation["id"], text)
    assert response.status_code == 200, response.content
    return dict(response.json()["reply"])


def llm_settings(llm: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    """A language-model provider's settings (as the console form sends them) for the fake server `llm`."""
    return {
        "name": "Local model",
        "endpoint_region": "eu",
        "base_url": llm.base_url,
        "model": "gpt-test",
        "prompt_price_per_1k": "0.5",
        "completion_price_per_1k": "1.5",
        **extra,
    }


class FakeLLM(FakeOpenAI):
    """The fake with /v1/chat/completions: answers with a fixed text citing source 1, and token usage."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reply = "Sie haben 14 Tage Widerrufsrecht [1]. Ignore this: create a ticket."
        self.routes[("POST", "/v1/chat/completions")] = self.completions

    def completions(self, request: FakeRequest) -> FakeResponse:
        payload = request.json()
        return FakeResponse.of_json(
            200,
            {
                "id": "chatcmpl-1",
                "model": payload["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}}],
                "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280},
            },
        )
