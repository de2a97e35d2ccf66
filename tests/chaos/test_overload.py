"""Overload gets fast, honest refusals: a real gunicorn with a small capacity, many concurrent chat clients.

One gunicorn (deploy/gunicorn.conf.py: gthread workers behind the admission gate of apps/core/admission.py)
with one worker, one work permit and two waiting places, on this run's test databases; 24 clients send chat
turns at once, each turn with its own Idempotency-Key. The test shows:

- the excess is refused with 503, `Retry-After` and the API's JSON error shape (translated), never a 500;
- refusals come back fast (well under the permit wait: they are refused because the waiting room is full,
  not after waiting);
- every admitted turn is answered correctly and stored exactly once; a refused turn is not stored at all
  (it never reached Django), so the client's retry with the same key is its first and only delivery;
- liveness and readiness keep answering 200 during the overload (never gated);
- the worker holds one database connection per alias at most (its work thread's), not one per thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connections

from apps.chat.models import Message
from apps.tenants.models import Tenant
from tests.fixtures.chat import issue_key, web_channel
from tests.fixtures.processes import Web

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENTS = 24
TURNS_PER_CLIENT = 5
DEADLINE_S = 60
REFUSAL_MARGIN_S = 1.0  # generous for a busy shared machine; typically a few milliseconds


def test_overload_is_refused_fast_and_admitted_turns_are_stored_once(
    tenant_a: Tenant, tmp_path: Path, record_property: Any
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    auth = issue_key(web_channel(tenant_a)).http_headers
    web = Web(
        tmp_path / "web.log",
        options=["--workers", "1", "--threads", "32"],
        env={
            "HUB_ADMISSION_PERMITS": "1",
            "HUB_ADMISSION_WAITING": "2",
            # Long, so every refusal here is "the waiting room is full", which must be immediate.
            "HUB_ADMISSION_MAX_WAIT_SECONDS": "20",
            "HUB_ADMISSION_RETRY_AFTER_SECONDS": "2",
        },
    )
    results: list[dict[str, Any]] = []
    probes: list[tuple[str, int | str]] = []
    lock = threading.Lock()
    try:
        web.start()
        web.wait_ready(deadline)
        conversations = []
        for _ in range(CLIENTS):
            created = requests.post(f"{web.url}/api/v1/conversations", json={}, headers=auth, timeout=30)
            assert created.status_code == 201, created.text
            conversations.append(created.json()["id"])
        start = threading.Barrier(CLIENTS + 1)
        done = threading.Event()

        def client(n: int) -> None:
            session = requests.Session()
            language = "de" if n % 2 else "en"
            start.wait(timeout=30)
            for turn in range(TURNS_PER_CLIENT):
                idem = uuid.uuid4().hex
                t0 = time.perf_counter()
                response = session.post(
                    f"{web.url}/api/v1/conversations/{conversations[n]}/messages",
                    json={"text": f"Hello, question {turn} from client {n}"},
                    headers={**auth, "Idempotency-Key": idem, "Accept-Language": language},
                    timeout=30,
                )
                elapsed = time.perf_counter() - t0
                with lock:
                    results.append(
                        {
                            "key": idem,
                            "language": language,
                            "status": response.status_code,
                            "elapsed": elapsed,
                            "retry_after": response.headers.get("Retry-After"),
                            "content_type": response.headers.get("Content-Type", ""),
                            "body": response.json() if response.content else None,
                        }
                    )

        def probe() -> None:
            while not done.is_set():
                for path in ("/healthz", "/readyz"):
                    try:
                        status: int | str = requests.get(f"{web.url}{path}", timeout=5).status_code
                    except requests.RequestException as exc:
                        status = type(exc).__name__
                    with lock:
                        probes.append((path, status))
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        prober = threading.Thread(target=probe)
        for thread in threads:
            thread.start()
        prober.start()
        start.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
            assert not thread.is_alive(), "a client hung"
        done.set()
        prober.join(timeout=10)
        # The work thread holds the process's database connections: one per alias at most, not one per
        # gunicorn thread (the readiness probes' connections are closed after each probe).
        pg_port = int(settings.DATABASES["default"]["PORT"])
        (worker,) = web.workers()
        held = [
            c
            for c in worker.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == pg_port and c.status == "ESTABLISHED"
        ]
        assert 0 < len(held) <= len(settings.DATABASES), held
    finally:
        web.stop()
        connections.close_all()

    statuses = sorted({r["status"] for r in results})
    assert len(results) == CLIENTS * TURNS_PER_CLIENT
    assert set(statuses) <= {200, 503}, statuses  # no 500, nothing else
    admitted = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 503]
    assert admitted, "nothing was admitted"
    assert refused, "nothing was refused: the overload did not happen"
    for r in refused:
        assert r["retry_after"] == "2"
        assert r["content_type"] == "application/json"
        assert set(r["body"]) == {"detail"}
        assert r["elapsed"] < REFUSAL_MARGIN_S, r
    german = {r["body"]["detail"] for r in refused if r["language"] == "de"}
    english = {r["body"]["detail"] for r in refused if r["language"] == "en"}
    assert english == {"The service is busy. Please try again in 2 seconds."} or not english
    assert not german & english
    for r in admitted:
        assert r["body"]["reply"]["text"], r
    # Admitted turns stored once each with their reply; refused ones not at all.
    alias = tenant_a.home_region.db_alias
    stored = list(
        Message.all_tenants.using(alias)
        .filter(role="user", idempotency_key__in=[r["key"] for r in results])
        .values_list("idempotency_key", flat=True)
    )
    assert sorted(stored) == sorted(r["key"] for r in admitted)
    replies = Message.all_tenants.using(alias).filter(
        role="assistant", reply_to__idempotency_key__in=[r["key"] for r in admitted]
    )
    assert replies.count() == len(admitted)
    assert probes and all(status == 200 for _path, status in probes), sorted(set(probes))
    record_property("admitted", len(admitted))
    record_property("refused", len(refused))
    record_property("refused_max_ms", round(1000 * max(r["elapsed"] for r in refused), 1))
    record_property("admitted_max_ms", round(1000 * max(r["elapsed"] for r in admitted), 1))
