"""/readyz: cached in Redis for a few seconds (one migration graph per TTL, not per probe), tells the public
only ok/unavailable (no database alias, name or host), and answers 503 fast when Redis stalls."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db(databases="__all__")

TOKEN = "readyz-metrics-token-for-tests"


def internal_names() -> set[str]:
    """Everything a caller should not learn about the deployment from a public probe."""
    names = {"database", "redis", *settings.DATABASES}
    for config in settings.DATABASES.values():
        names |= {str(config["NAME"]), str(config.get("HOST") or ""), str(config.get("PORT") or "")}
    return {name for name in names if name}


@pytest.fixture
def private(settings: Any) -> None:
    settings.HUB_METRICS_TOKEN = TOKEN


@pytest.fixture
def stalled_redis() -> Iterator[str]:
    """A TCP listener on loopback that accepts connections and never answers: a hung Redis."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()


def checks_per_database(client: Client, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often one probe checked each database (the checks run in threads of their own, issue 15)."""
    from apps.observability import health

    counted = dict.fromkeys(settings.DATABASES, 0)
    real = health.check_database

    def counting(alias: str) -> str | None:
        counted[alias] += 1
        return real(alias)

    with monkeypatch.context() as patch:
        patch.setattr(health, "check_database", counting)
        assert client.get("/readyz").status_code == 200
    return counted


def test_calls_within_the_ttl_build_the_migration_graph_once(
    client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.HUB_READYZ_CACHE_SECONDS = 1
    first = checks_per_database(client, monkeypatch)
    assert first == dict.fromkeys(settings.DATABASES, 1)  # SELECT 1 + the migration graph, per database
    for _ in range(5):
        assert checks_per_database(client, monkeypatch) == dict.fromkeys(settings.DATABASES, 0)
    time.sleep(1.1)  # the cached verdict expires: the next probe checks again
    assert checks_per_database(client, monkeypatch) == first


def test_the_cache_is_shared_by_every_process_of_the_host(client: Client) -> None:
    """Another process (a second gunicorn worker) reads the verdict this one wrote: it opens no database."""
    assert client.get("/readyz").status_code == 200
    code = (
        "import django; django.setup(); "
        "from django.db import connections; from apps.observability.health import readiness_cached; "
        "result = readiness_cached(); "
        "print(result['redis'], sum(connections[alias].connection is not None for alias in connections))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.stdout.split() == ["ok", "0"], result.stderr[-2000:]


def test_public_body_names_no_alias_database_or_host(client: Client, private: None) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    body = response.content.decode()
    assert not [name for name in internal_names() if name in body]


def test_staff_and_token_holders_get_the_detailed_report(client: Client, private: None, alice: Any) -> None:
    detailed = client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert detailed["checks"] == {**{f"database:{a}": "ok" for a in settings.DATABASES}, "redis": "ok"}
    assert "checks" not in client.get("/readyz", HTTP_AUTHORIZATION="Bearer wrong").json()
    login_verified(client, alice)
    assert "checks" not in client.get("/readyz").json()  # a tenant member is not staff
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    assert "checks" in client.get("/readyz").json()


def test_stalled_redis_is_a_fast_503_that_names_nothing(
    client: Client, private: None, settings: Any, stalled_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = stalled_redis
    started = time.monotonic()
    response = client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert elapsed < settings.HUB_READYZ_REDIS_TIMEOUT + 1.5, elapsed
    assert not [name for name in internal_names() if name in response.content.decode()]
    assert any("readiness" in record.getMessage() for record in caplog.records)  # the details go to the log
    detailed = client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert detailed.status_code == 503 and detailed.json()["checks"]["redis"].startswith("unreachable")
