"""Fit an embedding model's calibration (embeddings.calibration) on the tune split (issue 20, slice e5).

Cosines of different models sit on different scales, so the answer threshold, the off-topic margin and the
rerank weights fitted with USE do not carry over to another model. This indexes the Northwind help center
(with its editors' phrasings) with `--model` in a throwaway tenant, and for every question of the TUNE split
(in-domain and out-of-domain; bench_answer_quality.load with heldout=False, never the held-out split) keeps
the rerank candidates with their features and the question's similarity to the off-topic examples. A grid of
(rerank weights, min_relevance, off_topic_margin) is then scored offline as the chat decides
(apps/chat/services/conversations._off_topic): the best rerank candidate is answered unless its relevance is
below the threshold or the off-topic similarity exceeds relevance - margin.

Objective: questions handled right (in-domain: the expected article first; out-of-domain: refused) among
settings whose in-domain fallback stays at or under `--max-fallback` (default 0.02, the issue's target).
Prints the best rows; changes nothing. Single turns only (follow-ups are measured by bench_answer_quality).

    PYTHONPATH=. .venv/bin/python bench/tune_calibration.py --model e5
"""

from __future__ import annotations

import argparse
import itertools
import os
import uuid
from typing import Any

from bench.bench_answer_quality import MODELS, articles, load
from bench.tune_rerank import GRID

THRESHOLDS = {
    "use": [0.20, 0.25, 0.28, 0.30, 0.32, 0.35, 0.40],
    "e5": [0.70, 0.75, 0.78, 0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88],
}
MARGINS = {
    "use": [-1.0, 0.0, 0.03, 0.05, 0.08, 0.10],
    "e5": [-1.0, -0.02, -0.01, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05],
}

Case = tuple[str | None, str, float, list[tuple[str, tuple[float, ...]]]]


def collect(lines: list[str], questions: list[dict[str, Any]]) -> list[Case]:
    """(expected article or None, locale, off-topic similarity, candidates with features) per question."""
    from apps.chat.services import intents
    from apps.core.context import tenant_context
    from apps.knowledge.embeddings import get_provider
    from apps.knowledge.models import KnowledgeBase
    from apps.knowledge.selectors import RERANK_CANDIDATES, knowledge_search
    from apps.knowledge.services import kb_create, kb_import
    from apps.tenants.models import Region
    from apps.tenants.services import tenant_create

    provider = get_provider()
    tenant = tenant_create(
        slug=f"bench-cal-{uuid.uuid4().hex[:8]}",
        name="Calibration",
        home_region=Region.objects.get(code="eu"),
    )
    try:
        with tenant_context(tenant):
            kb = kb_create(
                tenant=tenant,
                name="Help center",
                source_locale="en",
                enabled_locales=["de", "fr", "es", "ja"],
                regions=["EU", "US"],
            )
            kb_import(kb=kb, lines=lines, index_now=True)
            found: list[Case] = []
            for case in questions:
                vector = provider.embed_query(case["question"])
                hits = knowledge_search(
                    tenant=tenant,
                    query=case["question"],
                    locale=case["locale"],
                    region=case["region"],
                    k=RERANK_CANDIDATES,
                    query_vector=vector,
                )
                off = intents.off_topic_similarity(vector, provider=provider)
                found.append(
                    (case["expect"], case["locale"], off, [(h.article_key, h.features) for h in hits])
                )
            return found
    finally:
        with tenant_context(tenant):
            KnowledgeBase.objects.all().delete()
        tenant.is_active = False
        tenant.save(update_fields=["is_active"])


def score(cases: list[Case], weights: tuple[float, ...], threshold: float, margin: float) -> dict[str, float]:
    """recall@1 (a fallback is a miss), in-domain fallback, out-of-domain refused, share handled right."""
    right = fallback = refused = inside = 0
    for expect, _locale, off, found in cases:
        answer = None
        if found:
            key, features = max(found, key=lambda c: sum(w * f for w, f in zip(weights, c[1], strict=False)))
            relevance = max(features[1], features[2])
            if relevance >= threshold and off <= relevance - margin:
                answer = key
        if expect:
            inside += 1
            right += answer == expect
            fallback += answer is None
        else:
            refused += answer is None
    outside = len(cases) - inside
    return {
        "recall@1": right / inside,
        "fallback": fallback / inside,
        "ood_refused": refused / outside if outside else 0.0,
        "handled": (right + refused) / len(cases),
    }


def intent_routing(questions: list[dict[str, Any]], model: str) -> None:
    """How many tune questions (all of them questions for the knowledge base or out-of-domain: none asks for
    a person, a ticket or sales) the intent examples would route away, per (threshold, margin): the intent
    calibration must route none of them. Rules (handoff/order/ticket words) route before examples do."""
    from apps.chat.services import intents
    from apps.knowledge.embeddings import get_provider

    provider = get_provider()
    labels, matrix = intents._examples.matrix(provider)
    tops = []
    for case in questions:
        scores = matrix @ provider.embed_query(case["question"])
        best: dict[str, float] = {}
        for label, value in zip(labels, scores.tolist(), strict=True):
            best[label] = max(best.get(label, -1.0), value)
        ranked = sorted(best.values(), reverse=True)
        tops.append((ranked[0], ranked[0] - ranked[1]))
    print("highest example similarity of a tune question:", round(max(t for t, _ in tops), 3))
    for threshold in {"use": [0.5, 0.55, 0.62], "e5": [0.85, 0.88, 0.9, 0.92]}[model]:
        for margin in (0.02, 0.04, 0.06):
            routed = sum(t >= threshold and m >= margin for t, m in tops)
            print(f"intent threshold={threshold} margin={margin}: {routed}/{len(tops)} routed away")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="use")
    parser.add_argument("--max-fallback", type=float, default=0.02)
    parser.add_argument("--intents-only", action="store_true", help="only the intent routing table")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    os.environ["HUB_EMBEDDING_PROVIDER"] = MODELS[args.model]
    import django

    django.setup()
    from django.core.management import call_command

    from apps.tenants.services import region_sync

    call_command("migrate", verbosity=0)
    region_sync()
    questions = load("questions.jsonl", heldout=False)
    intent_routing(questions, args.model)
    if args.intents_only:
        return
    cases = collect(articles(phrasings=True), questions)
    from apps.knowledge.embeddings import calibration

    now = calibration()
    shown = {
        k: round(v, 3)
        for k, v in score(cases, now.rerank_weights, now.min_relevance, now.off_topic_margin).items()
    }
    print(
        f"configured: weights={now.rerank_weights} min_relevance={now.min_relevance} "
        f"margin={now.off_topic_margin} {shown}"
    )
    rows = []
    for weights in itertools.product(*GRID):
        if not any(weights):
            continue
        for threshold, margin in itertools.product(THRESHOLDS[args.model], MARGINS[args.model]):
            result = score(cases, weights, threshold, margin)
            if result["fallback"] <= args.max_fallback:
                rows.append((result["handled"], result["recall@1"], weights, threshold, margin, result))
    rows.sort(key=lambda row: (-row[0], -row[1]))
    for handled, _recall, weights, threshold, margin, result in rows[:15]:
        shown = {k: round(v, 3) for k, v in result.items()}
        print(f"{handled:.3f} weights={weights} min_relevance={threshold} margin={margin} {shown}")


if __name__ == "__main__":
    main()
