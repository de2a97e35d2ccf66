"""The web role's gunicorn hooks: the embedding model is loaded before a worker takes requests."""

from __future__ import annotations

import logging

import pytest

from apps.knowledge.embeddings import get_provider
from hub import gunicorn


def test_post_worker_init_loads_the_embedding_model_and_the_examples() -> None:
    from apps.chat.services import intents

    provider = get_provider()
    intents._examples._vectors.clear()
    gunicorn.post_worker_init(None)
    assert getattr(provider, "_model", None) is not None
    # The intent and off-topic examples are embedded too: the first customer turn does not pay for them.
    assert set(intents._examples._vectors) == {provider.model_id, "off-topic:" + provider.model_id}


def test_a_failing_warm_up_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("no model here")

    monkeypatch.setattr("apps.knowledge.embeddings.get_provider", broken)
    with caplog.at_level(logging.WARNING, logger="hub.gunicorn"):
        gunicorn.post_worker_init(None)
    assert "warm-up failed" in caplog.text
