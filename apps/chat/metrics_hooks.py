"""The chat's metrics, in one place: bounded labels only (tenant slug, region, channel kind, model, and the
conversation's language as one of the tenant's configured languages or "other": metrics.locale_label)."""

from __future__ import annotations

from typing import Any

from apps.observability import metrics


def _locales(principal: Any) -> tuple[str, ...]:
    # An API-key entry cached before principals carried locales (at most auth.CACHE_TTL after an upgrade)
    # has no such slot: its turns count as "other" until it is reloaded.
    return getattr(principal, "locales", ())


def turn(*, principal: Any, region: str, outcome: str, seconds: float, locale: str) -> None:
    metrics.observe_chat_turn(
        tenant=principal.tenant.slug,
        region=region,
        channel=principal.channel.kind,
        outcome=outcome,
        seconds=seconds,
        locale=locale,
        locales=_locales(principal),
    )


def feedback(*, principal: Any, region: str, rating: int, locale: str) -> None:
    metrics.record_chat_feedback(
        tenant=principal.tenant.slug,
        region=region,
        channel=principal.channel.kind,
        rating=rating,
        locale=locale,
        locales=_locales(principal),
    )


def handoff_opened(*, principal: Any, connector: str, locale: str) -> None:
    metrics.record_handoff(event="opened", connector=connector, locale=locale, locales=_locales(principal))


def handoff_ended(*, event: str, connector: str, locale: str, locales: tuple[str, ...]) -> None:
    """A handoff resolved or failed, in a worker without a principal: `locales` from `tenant_locales`."""
    metrics.record_handoff(event=event, connector=connector, locale=locale, locales=locales)


def retrieval(*, region: str, seconds: float) -> None:
    metrics.observe_retrieval(region=region, seconds=seconds)


def llm_usage(*, principal: Any, region: str, answer: Any) -> None:
    metrics.record_llm_usage(
        tenant=principal.tenant.slug,
        region=region,
        channel=principal.channel.kind,
        model=answer.model,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        cost_usd=float(answer.cost_usd),
    )


def identity_proof(*, principal: Any, mode: str, result: str) -> None:
    metrics.record_identity_proof(
        tenant=principal.tenant.slug, channel=principal.channel.kind, mode=mode, result=result
    )


def identity_refusal(*, principal: Any, action: str, reason: str) -> None:
    metrics.record_identity_refusal(
        tenant=principal.tenant.slug, channel=principal.channel.kind, action=action, reason=reason
    )
