"""PII redaction throughput: `redact` against a naive baseline (same regexes, no pre-checks) in one run.

The corpus is generated (seeded): multilingual chat turns around 200 characters, most with no PII but
with the numbers chat is full of (order numbers, prices, dates, times, versions), a few with PII.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from apps.security import pii

MESSAGES = 5_000
REPEATS = 5

_CLEAN = [
    "Hi, I ordered the blue jacket last week and it still has not arrived. Can you check the status please?",
    "Thanks for the quick answer! The size guide says M but I usually wear L, what do you recommend?",
    "Hallo, meine Bestellung SO-100234 vom 01.05.2024 ist noch nicht da. Könnt ihr bitte nachsehen?",
    "Bonjour, le prix affiché était de 1 299,00 € mais on m'a facturé 1 349,00 €. Pouvez-vous corriger ?",
    "Hola, ¿podéis cambiar la dirección de entrega antes de las 14:30? Gracias por vuestra ayuda.",
    "こんにちは。注文した商品がまだ届いていません。配送状況を確認していただけますか。よろしくお願いします。",
    "Ciao, l'app versione 10.2.3 si blocca quando apro il carrello. Succede dal 2024-05-01.",
    "Goedemiddag, ik wil graag mijn abonnement opzeggen per 1 juni. Wat moet ik daarvoor doen?",
    "The invoice total was 1,299.00 EUR for 3 items, shipped in 2 boxes, tracking 1Z999AA10123456784.",
    "Ok great, that works for me. Have a nice day!",
]
_PII = [
    "You can reach me at jane.doe@example.com or on +49 30 1234567 after 6pm.",
    "Meine IBAN ist DE89 3704 0044 0532 0130 00, bitte dorthin erstatten.",
    "My card 4242 4242 4242 4242 was charged twice, please refund one of them.",
    "Mon numéro : 06 12 34 56 78, et mon e-mail marie@example.fr.",
    "電話番号は090-1234-5678です。メールはtaro@example.jpです。",
]


def _corpus(rng: random.Random, *, pii_share: float) -> list[str]:
    messages = []
    for _ in range(MESSAGES):
        parts = [rng.choice(_CLEAN)]
        if rng.random() < 0.5:
            parts.append(rng.choice(_CLEAN))
        if rng.random() < pii_share:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(_PII))
        messages.append(" ".join(parts))
    return messages


def _naive_redact(text: str) -> str:
    """Every detector on every message, and the e-mail regex over the whole text instead of around '@'."""
    found = [
        pii.PiiMatch(pii.PiiKind.EMAIL, m.start(), m.end(), m.group()) for m in pii._EMAIL_RE.finditer(text)
    ]
    found += pii._scan(text, frozenset(pii.PiiKind) - {pii.PiiKind.EMAIL}, precheck=False)
    parts, pos = [], 0
    for m in pii._resolve(found):
        parts += [text[pos : m.start], f"[{m.kind.name}]"]
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def _throughput(fn: Callable[[str], str], messages: list[str]) -> dict[str, float]:
    size_mb = sum(len(m.encode()) for m in messages) / 1e6
    chars = sum(len(m) for m in messages)
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for message in messages:
            fn(message)
        best = min(best, time.perf_counter() - start)
    return {
        "mb_per_s": round(size_mb / best, 1),
        "us_per_200_chars": round(best / chars * 200 * 1e6, 2),
    }


def _latency_200(fn: Callable[[str], str], message: str) -> float:
    """Median microseconds for one ~200-character message."""
    samples = []
    for _ in range(2_000):
        start = time.perf_counter()
        fn(message)
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1e6, 2)


def run() -> dict[str, object]:
    rng = random.Random(42)
    clean = _corpus(rng, pii_share=0.0)
    mixed = _corpus(rng, pii_share=0.05)
    for message in mixed:  # both implementations must agree before their speed means anything
        if pii.redact(message) != _naive_redact(message):
            raise RuntimeError("redact and the naive baseline disagree")
    sample = (_CLEAN[0] + " " + _CLEAN[2])[:200]
    sample_pii = (_PII[0] + " " + _CLEAN[0])[:200]
    result: dict[str, object] = {"messages": MESSAGES}
    for name, fn in (("redact", pii.redact), ("naive_baseline", _naive_redact)):
        result[name] = {
            "clean_corpus": _throughput(fn, clean),
            "mixed_corpus_5pct_pii": _throughput(fn, mixed),
            "p50_us_200_char_clean": _latency_200(fn, sample),
            "p50_us_200_char_with_pii": _latency_200(fn, sample_pii),
        }
    blob = "\n".join(clean)  # one call on a large text, like a transcript export or a log file
    for name, fn in (("redact", pii.redact), ("naive_baseline", _naive_redact)):
        result[name]["clean_blob_one_call"] = _throughput(fn, [blob])  # type: ignore[index]
    ours = result["redact"]["clean_corpus"]["mb_per_s"]  # type: ignore[index]
    base = result["naive_baseline"]["clean_corpus"]["mb_per_s"]  # type: ignore[index]
    result["speedup_clean"] = round(ours / base, 2)
    return result
