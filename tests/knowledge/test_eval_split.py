"""The answer-quality evaluation set (bench/eval/helpcenter): the held-out split stays out of tuning."""

from __future__ import annotations

import json
from collections import Counter

from bench.bench_answer_quality import DATA, articles, load


def test_tuning_reads_only_the_tune_split_and_reporting_only_the_held_out_one() -> None:
    tune, held = load("questions.jsonl", heldout=False), load("questions.jsonl", heldout=True)
    assert tune and held
    assert {row["split"] for row in tune} == {"tune"} and {row["split"] for row in held} == {"heldout"}
    assert not {row["id"] for row in tune} & {row["id"] for row in held}
    # About 30 % of the questions in every language are held out.
    per_language = Counter(row["locale"] for row in held)
    totals = Counter(row["locale"] for row in tune + held)
    assert all(0.2 <= per_language[lang] / totals[lang] <= 0.4 for lang in totals), (per_language, totals)
    assert {row["split"] for row in load("followups.jsonl", heldout=False)} == {"tune"}


def test_the_editors_phrasings_were_not_copied_from_any_question() -> None:
    def norm(text: str) -> str:
        return " ".join(text.casefold().replace("?", " ").replace("\uff1f", " ").split())

    asked = {norm(row["question"]) for row in load("questions.jsonl", heldout=False)}
    asked |= {norm(row["question"]) for row in load("questions.jsonl", heldout=True)}
    for name in ("followups.jsonl",):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                asked |= {norm(turn) for turn in json.loads(line)["turns"]}
    phrasings = [
        norm(p)
        for line in (DATA / "phrasings.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
        for p in json.loads(line)["phrasings"]
    ]
    assert len(phrasings) >= 42 * 5 * 5
    assert not set(phrasings) & asked
    # Every generic text of the five written languages carries them in the import lines.
    with_phrasings = [json.loads(line) for line in articles(phrasings=True)]
    assert sum(1 for row in with_phrasings if row.get("phrasings")) == 42 * 5
    assert not any("phrasings" in json.loads(line) for line in articles(phrasings=False))
