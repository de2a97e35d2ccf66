"""Overload: 256 chat clients against a capacity of 32, with and without the admission gate.

Same data, key, turn mix, production settings and load generator as bench_chat (its set-up is reused; keep
the data between runs with BENCH_CHAT_TENANT). Two servers, one after the other, each with 2 x cores + 1
workers:
- `admission`: what deploy/gunicorn.conf.py runs by default: gthread workers (GUNICORN_THREADS, 32) behind the
  admission gate (apps/core/admission.py: one work permit per process, HUB_ADMISSION_WAITING places in line,
  the rest refused at once with 503 + Retry-After);
- `sync`: the previous default, single-threaded sync workers: the excess waits in the kernel's accept queue.
On each: a warm-up, then `capacity` (BENCH_OVERLOAD_CAPACITY, 32 closed-loop clients), then `overload`
(BENCH_OVERLOAD_CLIENTS, 256), BENCH_OVERLOAD_SECONDS each. A refused client waits what Retry-After says
(times a random 0.5-1.5, so refused clients do not come back in step), as a well-behaved channel or load
balancer does, then sends its next turn.

Targets (issue 15): in the same run, admitted turns' p99 under overload within 2x of the capacity p99, and
refused requests answered in < 50 ms (p99).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from typing import Any

from bench import bench_chat
from bench.bench_chat import LOCALES, MIX, ORDERS, Conn, Server
from bench.common import summarize

CAPACITY = int(os.environ.get("BENCH_OVERLOAD_CAPACITY", "32"))
CLIENTS = int(os.environ.get("BENCH_OVERLOAD_CLIENTS", "256"))
SECONDS = float(os.environ.get("BENCH_OVERLOAD_SECONDS", "20"))
WARMUP_SECONDS = float(os.environ.get("BENCH_OVERLOAD_WARMUP_SECONDS", "5"))
WORKERS = int(os.environ.get("BENCH_OVERLOAD_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
THREADS = int(os.environ.get("BENCH_OVERLOAD_THREADS", "32"))


def _text(locale: str, rng: random.Random, questions: dict[str, list[str]]) -> str:
    roll, what = rng.random(), MIX[-1][0]
    for name, share in MIX:
        if roll < share:
            what = name
            break
        roll -= share
    if what == "repeated":
        return rng.choice(questions[locale][:4])
    if what == "small_talk":
        return rng.choice(bench_chat._SMALL_TALK[locale])
    if what == "order_status":
        return bench_chat._ORDER_ASK[locale].format(n=rng.choice(ORDERS).lstrip("0"))
    return bench_chat._turn_texts(locale, rng, questions)["fresh"]


async def _phase(
    port: int, key: str, clients: int, seconds: float, questions: dict[str, list[str]]
) -> dict[str, Any]:
    """`clients` closed-loop chat clients for `seconds`: admitted and refused latencies, statuses."""
    auth = {"Authorization": f"Bearer {key}"}
    admitted: list[float] = []
    refused: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        conn = Conn("127.0.0.1", port)
        rng = random.Random(i * 7919 + int(time.time()))
        locale = LOCALES[i % len(LOCALES)]
        conversation, turns = "", 0
        try:
            while time.perf_counter() < deadline:
                if not conversation or turns >= bench_chat.TURNS_PER_CONVERSATION:
                    status, data = await conn.request(
                        "POST", "/api/v1/conversations", headers=auth, body={"locale": locale}
                    )
                    if status == 503:
                        await asyncio.sleep(_backoff(conn, rng))
                        continue
                    if status != 201:
                        raise RuntimeError(f"conversation create answered {status}: {data[:200]!r}")
                    conversation, turns = json.loads(data)["id"], 0
                headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
                body = {"text": _text(locale, rng, questions)}
                t0 = time.perf_counter()
                status, data = await conn.request(
                    "POST", f"/api/v1/conversations/{conversation}/messages", headers=headers, body=body
                )
                ms = (time.perf_counter() - t0) * 1000
                statuses[status] += 1
                if status == 200:
                    admitted.append(ms)
                    turns += 1
                elif status == 503 and conn.headers.get("retry-after"):
                    refused.append(ms)
                    await asyncio.sleep(_backoff(conn, rng))
                else:
                    errors.append(f"{status} {data[:200]!r}")
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"clients": clients, "statuses": dict(statuses)}
    result["admitted"] = {**summarize(admitted), "rps": round(len(admitted) / elapsed, 1)} if admitted else {}
    result["refused"] = {**summarize(refused), "max_ms": round(max(refused), 1)} if refused else {"n": 0}
    if errors:
        result["errors_sample"] = errors[:5]
    return result


def _backoff(conn: Conn, rng: random.Random) -> float:
    return float(conn.headers.get("retry-after", "1")) * rng.uniform(0.5, 1.5)


def _measured(server: Server, key: str, clients: int, questions: dict[str, list[str]]) -> dict[str, Any]:
    """One phase, with the CPU the gunicorn processes and this load generator used (2 shared cores)."""
    assert server.proc is not None
    before, client_before = bench_chat._cpu_seconds([server.proc.pid]), time.process_time()
    result = asyncio.run(_phase(server.port, key, clients, SECONDS, questions))
    web = bench_chat._cpu_used(before, bench_chat._cpu_seconds([server.proc.pid]))
    result["web_cpu_pct"] = round(100 * web / SECONDS, 1)
    result["client_cpu_pct"] = round(100 * (time.process_time() - client_before) / SECONDS, 1)
    return result


def _server_run(
    key: str, questions: dict[str, list[str]], *, threads: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    server = Server(metrics=True, workers=WORKERS, threads=threads)
    server.env.update(env or {})
    with server:
        asyncio.run(_phase(server.port, key, CAPACITY, WARMUP_SECONDS, questions))
        capacity = _measured(server, key, CAPACITY, questions)
        overload = _measured(server, key, CLIENTS, questions)
    ratio = None
    if capacity["admitted"].get("p99_ms") and overload["admitted"].get("p99_ms"):
        ratio = round(overload["admitted"]["p99_ms"] / capacity["admitted"]["p99_ms"], 2)
    return {
        "workers": WORKERS,
        "threads": threads,
        "capacity": capacity,
        "overload": overload,
        "admitted_p99_overload_over_capacity": ratio,
    }


def run() -> dict[str, Any]:
    sys.path.insert(0, str(bench_chat.ROOT))
    bench_chat._setup_django()
    result: dict[str, Any] = {
        "capacity_clients": CAPACITY,
        "overload_clients": CLIENTS,
        "seconds_per_phase": SECONDS,
        "cores": os.cpu_count(),
        "load_average_before": bench_chat._loadavg(),
    }
    prepared = bench_chat._prepare()
    tenant, key = prepared["tenant"], prepared["key"]
    questions = bench_chat._questions()
    try:
        result["admission"] = _server_run(key, questions, threads=THREADS)
        result["sync"] = _server_run(key, questions, threads=1)
        result["load_average_after"] = bench_chat._loadavg()
    finally:
        bench_chat._cleanup(tenant)
    gated = result["admission"]
    refused_p99 = gated["overload"]["refused"].get("p99_ms")
    result["targets"] = {"admitted_p99_overload_over_capacity": 2.0, "refused_p99_ms": 50}
    result["meets_targets"] = {
        "admitted_p99": (gated["admitted_p99_overload_over_capacity"] or 1e9) <= 2.0,
        "refused_p99": refused_p99 is not None and refused_p99 < 50,
    }
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
