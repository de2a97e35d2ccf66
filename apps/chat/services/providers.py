"""Which LLMProvider answers a tenant's conversation in a region.

An enabled OpenAI-compatible provider configured for the region (or for any region) is used only if the
tenant's residency policy allows sending data to the provider endpoint's region; otherwise the offline
extractive provider answers. The choice is cached briefly in the shared cache (ids only, no secrets).
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models import Q

from apps.chat.models import LlmProviderConfig
from apps.chat.services.llm import ExtractiveProvider, LLMProvider, OpenAICompatibleProvider
from apps.core.context import as_ref
from apps.policies.services import TransferRefused, transfer_check

_CACHE_SECONDS = 30
_NONE = "-"


def _cache_key(tenant_id: int, region: str) -> str:
    return f"chat:llm:{tenant_id}:{region}"


def provider_config_changed(*, tenant_id: int, regions: list[str]) -> None:
    cache.delete_many([_cache_key(tenant_id, r) for r in {*regions, ""}])


def _config(tenant: Any, region: str) -> LlmProviderConfig | None:
    key = _cache_key(tenant.id, region)
    pk = cache.get(key)
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


def answer_provider(*, tenant: Any, region: str) -> LLMProvider:
    ref = as_ref(tenant)
    config = _config(ref, region)
    if config is None:
        return ExtractiveProvider()
    try:
        transfer_check(tenant=ref, destination_region=config.endpoint_region, purpose="llm.generate")
    except TransferRefused:  # audited once; not again on every turn while the choice is cached
        cache.set(_cache_key(ref.id, region), _NONE, _CACHE_SECONDS)
        return ExtractiveProvider()
    from apps.integrations.conf import connector_session

    return OpenAICompatibleProvider(
        base_url=config.base_url,
        model=config.model,
        api_key=str(config.api_key or ""),
        session=connector_session(),
        prompt_price_per_1k=config.prompt_price_per_1k,
        completion_price_per_1k=config.completion_price_per_1k,
    )
