"""The chat's metrics, in one place: bounded labels only (tenant slug, region, channel kind, model)."""

from __future__ import annotations

from typing import Any

from apps.observability import metrics


def turn(*, principal: Any, region: str, outcome: str, seconds: float) -> None:
    metrics.observe_chat_turn(
        tenant=principal.tenant.slug,
        region=region,
        channel=principal.channel.kind,
        outcome=outcome,
        seconds=seconds,
    )


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
