"""Which language models serve a tenant's conversation in a region: who answers, and who classifies.

An enabled OpenAI-compatible provider configured for the region (or for any region) is used only if the
tenant's residency policy allows sending data to the provider endpoint's region; otherwise the offline
extractive provider answers and nothing classifies beyond the fast rules and examples. The choice is cached
briefly in the shared cache (ids only, no secrets); a turn reads it together with its answer-cache entry
(`choice_key`) and looks it up at most once (`TurnModels`).
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from django.core.cache import cache
from django.db.models import Q

from apps.chat.models import LlmProviderConfig
from apps.chat.services.llm import ExtractiveProvider, LLMProvider, OpenAICompatibleProvider
from apps.core.context import as_ref
from apps.policies.services import TransferRefused, transfer_check
from connectors.http import url_origin

logger = logging.getLogger(__name__)

_CACHE_SECONDS = 30
_NONE = "-"
UNREAD: Any = object()  # the cached choice was not read yet (None: read, and not cached)
# Seconds an unsure message waits for the provider's classification before it is answered as a question.
CLASSIFY_TIMEOUT = 5.0


def choice_key(*, tenant_id: int, region: str) -> str:
    """The cache key of the tenant's provider choice for `region`."""
    return f"chat:llm:{tenant_id}:{region}"


def provider_config_changed(*, tenant_id: int, regions: list[str]) -> None:
    cache.delete_many([choice_key(tenant_id=tenant_id, region=r) for r in {*regions, ""}])


def _config(tenant: Any, region: str, *, cached: Any = UNREAD) -> LlmProviderConfig | None:
    key = choice_key(tenant_id=tenant.id, region=region)
    pk = cache.get(key) if cached is UNREAD else cached
    if pk == _NONE:
        return None
    qs = LlmProviderConfig.objects.filter(enabled=True)
    if pk is not None:
        config = qs.filter(pk=pk).first()
        if config is not None:
            return config
    config = qs.filter(Q(region=region) | Q(region="")).order_by("-region", "name").first()
    cache.set(key, str(config.pk) if config else _NONE, _CACHE_SECONDS)
    return config


class TurnModels:
    """One turn's language models, looked up on first use and only once.

    `cached` is the provider choice as the turn already read it from the cache (see `choice_key`), so a
    tenant without a provider costs no cache call or query here.
    """

    def __init__(self, *, tenant: Any, region: str, cached: Any = UNREAD) -> None:
        self.tenant = as_ref(tenant)
        self.region = region
        self.cached = cached

    @cached_property
    def remote(self) -> tuple[OpenAICompatibleProvider, bool] | None:
        """The tenant's provider and whether it classifies intents; None: answer offline."""
        config = _config(self.tenant, self.region, cached=self.cached)
        if config is None:
            return None
        try:
            transfer_check(
                tenant=self.tenant, destination_region=config.endpoint_region, purpose="llm.generate"
            )
        except TransferRefused:  # audited once; not again on every turn while the choice is cached
            cache.set(choice_key(tenant_id=self.tenant.id, region=self.region), _NONE, _CACHE_SECONDS)
            return None
        from apps.integrations.conf import connector_session

        if config.api_key and url_origin(config.base_url) != config.api_key_origin:
            # The base URL moved without the key being entered again (not through llm_provider_save): the key
            # stays home and the turn is answered offline.
            logger.warning("language model %s skipped: its key was entered for another address", config.pk)
            return None
        provider = OpenAICompatibleProvider(
            base_url=config.base_url,
            model=config.model,
            api_key=str(config.api_key or ""),
            session=connector_session(),
            prompt_price_per_1k=config.prompt_price_per_1k,
            completion_price_per_1k=config.completion_price_per_1k,
            classify_timeout=CLASSIFY_TIMEOUT,
        )
        return provider, config.classify_intents

    @property
    def answer(self) -> LLMProvider:
        return self.remote[0] if self.remote else ExtractiveProvider()

    @property
    def condenser(self) -> OpenAICompatibleProvider | None:
        """The provider that rewrites follow-ups as standalone questions: the tenant's, when it has one."""
        return self.remote[0] if self.remote else None

    @property
    def classifier(self) -> OpenAICompatibleProvider | None:
        """The provider when it is asked to classify unsure messages, else None."""
        return self.remote[0] if self.remote and self.remote[1] else None
