"""Readiness checks: every database reachable and migrated, Redis reachable.

Building the migration graph of every database costs tens of milliseconds and several queries, and /readyz is
public and probed by every load balancer: `readiness_cached` keeps the result in Redis for
HUB_READYZ_CACHE_SECONDS, shared by every process of the host (pods keep their own verdict), and reads it
with a short timeout so a stalled Redis makes readiness fail fast instead of hanging the probe.

A stalled database must not hang it either (issue 15): the databases are checked in parallel, each in a
thread of its own with its own connection (closed after), and whatever has not answered within
HUB_READYZ_DB_TIMEOUT is reported as "timeout"; the thread's call is severed by the watchdog of
apps/core/deadlines.py shortly after, so no thread outlives a stall for long.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import redis
from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger(__name__)


def check_database(alias: str) -> str | None:
    """Return None when `alias` answers and has no unapplied migration, else what is wrong."""
    try:
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            return "migrations not applied"
    except Exception as exc:
        logger.warning("readiness: database %s failed: %s", alias, type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return None


def _check_in_thread(alias: str, timeout: float, results: dict[str, str]) -> None:
    from apps.core.deadlines import db_call

    try:
        with db_call(connections[alias], limit=timeout):
            results[alias] = check_database(alias) or "ok"
    finally:
        connections.close_all()  # this thread's connections only


def _check_databases() -> dict[str, str]:
    timeout: float = settings.HUB_READYZ_DB_TIMEOUT
    results: dict[str, str] = {}
    threads = [
        threading.Thread(target=_check_in_thread, args=(alias, timeout, results), daemon=True)
        for alias in settings.DATABASES
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    checks = {f"database:{alias}": results.get(alias, "timeout") for alias in settings.DATABASES}
    for name, verdict in checks.items():
        if verdict == "timeout":
            logger.warning("readiness: %s did not answer within %.1f s", name, timeout)
    return checks


def _cache_key() -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "hub")
    return f"{prefix}:readyz:v1:{socket.gethostname()}"


def readiness_cached() -> dict[str, str]:
    """Map each dependency to "ok" or what is wrong, from Redis when a process of this host checked within
    HUB_READYZ_CACHE_SECONDS."""
    ttl: int = settings.HUB_READYZ_CACHE_SECONDS
    timeout: float = settings.HUB_READYZ_REDIS_TIMEOUT
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    key = _cache_key()
    try:
        with client:
            if not ttl:
                client.ping()
            elif (cached := client.get(key)) is not None:
                return dict(json.loads(cached))
            # Redis answered, so it is reachable: only the databases need checking.
            results = {**_check_databases(), "redis": "ok"}
            if ttl:
                client.set(key, json.dumps(results), ex=ttl)
    except redis.RedisError as exc:
        logger.warning("readiness: redis failed: %s", type(exc).__name__)
        results = {**_check_databases(), "redis": f"unreachable ({type(exc).__name__})"}
    if any(value != "ok" for value in results.values()):
        logger.warning("readiness: not ready", extra={"checks": results})
    return results
