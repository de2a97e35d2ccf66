"""`make bench`: run every benchmark module in bench/ and write JSON to bench/results/.

Each module exposes `run() -> dict`. Benchmarks run against the embedded services `make bench` starts.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODULES = [
    "bench.bench_readiness",
    "bench.bench_pii",
    "bench.bench_trust",
    "bench.bench_connectors",
    "bench.bench_resilience",
    "bench.bench_sync",
    "bench.bench_knowledge",
    "bench.bench_knowledge_quality",
    "bench.bench_answer_quality",
    "bench.bench_metrics",
    "bench.bench_chat",
    "bench.bench_overload",
    "bench.bench_channels",
    "bench.bench_handoff",
    "bench.bench_helpcenter",
    "bench.bench_siem",  # issue 22: SIEM streaming (append overhead, 100k backlog drain per kind)
]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    RESULTS.mkdir(parents=True, exist_ok=True)
    selected = sys.argv[1:] or MODULES
    for name in selected:
        module = importlib.import_module(name)
        started = time.time()
        result = module.run()
        result.update(
            {"benchmark": name, "started_at": started, "duration_s": round(time.time() - started, 2)}
        )
        out = RESULTS / f"{name.split('.')[-1]}.json"
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
