"""Fit the search rerank's weights (settings.HUB_KNOWLEDGE_RERANK_WEIGHTS) on the tune split (issue 20).

Indexes the Northwind help center (with its editors' phrasings) and the demo help center in throwaway tenants,
collects each question's rerank candidates with their features (apps/knowledge/selectors.rerank_features),
then searches a grid of weights for the best recall@1 summed over both sets. Only the Northwind set's TUNE
split is read (bench_answer_quality.load with heldout=False); the demo set is the project's own evaluation
(tests/knowledge/eval/questions.jsonl). Prints the best weights and their recall per set; changes nothing.

    PYTHONPATH=. .venv/bin/python bench/tune_rerank.py
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from pathlib import Path
from typing import Any

from bench.bench_answer_quality import articles, load

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARTICLES = ROOT / "apps" / "knowledge" / "demo_data" / "help_center.jsonl"
DEMO_QUESTIONS = ROOT / "tests" / "knowledge" / "eval" / "questions.jsonl"
GRID = ([0, 0.5, 1], [0, 0.5, 1], [0, 0.5, 1], [0, 0.5, 1], [0, 0.05, 0.1, 0.2], [0, 0.5, 1])

Candidates = list[tuple[str, tuple[float, ...]]]


def candidates(lines: list[str], questions: list[dict[str, Any]]) -> list[tuple[str, Candidates]]:
    """(expected article, candidates with features) per in-domain question, in a throwaway tenant."""
    from apps.core.context import tenant_context
    from apps.knowledge.models import KnowledgeBase
    from apps.knowledge.selectors import RERANK_CANDIDATES, knowledge_search
    from apps.knowledge.services import kb_create, kb_import
    from apps.tenants.models import Region
    from apps.tenants.services import tenant_create

    tenant = tenant_create(
        slug=f"bench-tune-{uuid.uuid4().hex[:8]}", name="Tuning", home_region=Region.objects.get(code="eu")
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
            found = []
            for case in questions:
                if not case["expect"]:
                    continue
                hits = knowledge_search(
                    tenant=tenant,
                    query=case["question"],
                    locale=case["locale"],
                    region=case["region"],
                    k=RERANK_CANDIDATES,
                )
                found.append((case["expect"], [(h.article_key, h.features) for h in hits]))
            return found
    finally:
        with tenant_context(tenant):
            KnowledgeBase.objects.all().delete()
        tenant.is_active = False
        tenant.save(update_fields=["is_active"])


def recall_at_1(weights: tuple[float, ...], cases: list[tuple[str, Candidates]]) -> float:
    right = 0
    for expect, found in cases:
        if found:
            best = max(found, key=lambda c: sum(w * f for w, f in zip(weights, c[1], strict=False)))
            right += best[0] == expect
    return right / len(cases) if cases else 0.0


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()
    from django.core.management import call_command

    from apps.tenants.services import region_sync

    call_command("migrate", verbosity=0)
    region_sync()
    sets = {
        "northwind_tune": candidates(articles(phrasings=True), load("questions.jsonl", heldout=False)),
        "demo": candidates(
            [line for line in DEMO_ARTICLES.read_text(encoding="utf-8").splitlines() if line.strip()],
            [json.loads(line) for line in DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines() if line],
        ),
    }
    scored = []
    for weights in itertools.product(*GRID):
        if any(weights):
            per_set = {name: recall_at_1(weights, cases) for name, cases in sets.items()}
            scored.append((sum(per_set.values()), weights, per_set))
    scored.sort(key=lambda item: -item[0])
    for total, weights, per_set in scored[:10]:
        print(f"{total:.3f}", weights, {name: round(value, 3) for name, value in per_set.items()})


if __name__ == "__main__":
    main()
