"""Readiness/latency smoke: /readyz (every database + Redis) against /healthz (no I/O) on one server."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

from apps.core.embedded import free_port
from bench.common import ROOT, gunicorn, summarize

REQUESTS = 300


def _measure(url: str) -> list[float]:
    samples = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        try:
            urllib.request.urlopen(url, timeout=5).read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{url} answered {exc.code}") from None
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def run() -> dict[str, object]:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    with gunicorn(free_port(), workers=1) as base:
        _measure(base + "/healthz")  # warm up
        healthz = summarize(_measure(base + "/healthz"))
        readyz = summarize(_measure(base + "/readyz"))
    return {
        "healthz_baseline": healthz,
        "readyz": readyz,
        "readyz_over_baseline_p50": round(readyz["p50_ms"] / healthz["p50_ms"], 2),
    }
