"""Cost of each offline embedding model (issue 20, slice e5): time to embed one question, one thread.

Embeds every question of the Northwind TUNE split one at a time (as a chat turn does; model loaded and warmed
up first) with USE and with E5, alternating per question so both see the same load on a shared machine, and
the help center's article sections in batches (as indexing does). Reports median / p90 / p99 ms per
question, ms per indexed text and the ratios E5 / USE (compare ratios within one run only).
Writes bench/results/bench_embedding_models.json.

    PYTHONPATH=. .venv/bin/python bench/bench_embedding_models.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.bench_answer_quality import DATA, MODELS, load

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "bench_embedding_models.json"


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(values[len(values) // 2], 2),
        "p90": round(values[int(len(values) * 0.9)], 2),
        "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 2),
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()
    from django.utils.module_loading import import_string

    providers = {name: import_string(path)(threads=1) for name, path in MODELS.items()}
    for provider in providers.values():
        provider.embed_query("warm up")
        provider.embed(["warm up"])
    questions = [case["question"] for case in load("questions.jsonl", heldout=False)]
    per_query: dict[str, list[float]] = {name: [] for name in providers}
    for _round in range(3):
        for question in questions:
            for name, provider in providers.items():
                started = time.perf_counter()
                provider.embed_query(question)
                per_query[name].append((time.perf_counter() - started) * 1000)
    passages: list[str] = []
    for name in ("articles_a.jsonl", "articles_b.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                body = json.loads(line)["body"]
                passages.extend(part.strip() for part in body.split("\n\n") if part.strip())
    passages = passages[:400]
    per_text = {}
    for name, provider in providers.items():
        started = time.perf_counter()
        for start in range(0, len(passages), 64):
            provider.embed(passages[start : start + 64])
        per_text[name] = round((time.perf_counter() - started) * 1000 / len(passages), 2)
    result: dict[str, Any] = {
        "questions": len(questions) * 3,
        "texts": len(passages),
        "query_ms": {name: _percentiles(values) for name, values in per_query.items()},
        "index_ms_per_text": per_text,
    }
    result["ratio_e5_use"] = {
        "query_p50": round(result["query_ms"]["e5"]["p50"] / result["query_ms"]["use"]["p50"], 1),
        "query_p99": round(result["query_ms"]["e5"]["p99"] / result["query_ms"]["use"]["p99"], 1),
        "index": round(per_text["e5"] / per_text["use"], 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
