"""Fit each embedding model's grouping threshold for "Unanswered questions" (embeddings.calibration
`group_similarity`; apps/knowledge/learning._grouped) on the editors' phrasings of the Northwind help center.

The phrasings (bench/eval/helpcenter/phrasings.jsonl: 8 ways customers ask each of 42 articles, in en/de/fr/
es/ja, written from the articles, tuning data) stand in for unanswered questions: grouped by the real
`_grouped`, a pair of one group is right when both phrasings belong to the same article, wrong otherwise.
A wrong merge costs more than a split (attaching a group marks every question in it handled), so a model's
threshold is the one whose precision matches USE's at its 0.55, erring towards splitting. Changes nothing.

    PYTHONPATH=. .venv/bin/python bench/tune_grouping.py
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from itertools import combinations

from bench.bench_answer_quality import DATA, MODELS

THRESHOLDS = {"use": [0.5, 0.55, 0.6, 0.65], "e5": [0.86, 0.88, 0.9, 0.91, 0.92, 0.93]}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()
    from django.test import override_settings
    from django.utils.module_loading import import_string

    from apps.knowledge.learning import AskedQuestion, _grouped, question_hash

    rows: list[tuple[AskedQuestion, str, str, str, str]] = []
    key_of: dict[str, str] = {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for line in (DATA / "phrasings.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        for text in entry["phrasings"]:
            asked = AskedQuestion(text, entry["locale"], "", "fallback", start + timedelta(seconds=len(rows)))
            rows.append((asked, text, question_hash(text), entry["locale"], ""))
            key_of[question_hash(text)] = entry["key"]
    same = sum(1 for a, b in combinations(rows, 2) if a[3] == b[3] and key_of[a[2]] == key_of[b[2]])
    for name, path in MODELS.items():
        provider = import_string(path)(threads=2)
        for threshold in THRESHOLDS[name]:
            entry = {provider.model_id: {"group_similarity": threshold}}
            with override_settings(HUB_EMBEDDING_CALIBRATION=entry):
                groups = _grouped(rows, provider)
            pairs = [(a, b) for g in groups for a, b in combinations(g.hashes, 2)]
            right = sum(key_of[a] == key_of[b] for a, b in pairs)
            wrong = len(pairs) - right
            print(
                f"{name} {threshold:.2f}: {len(groups)} groups, right pairs {right}/{same}, wrong {wrong}, "
                f"precision {right / max(1, len(pairs)):.2f}"
            )


if __name__ == "__main__":
    main()
