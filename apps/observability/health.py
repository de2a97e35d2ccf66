"""Readiness checks: every database reachable and migrated, Redis reachable."""

from __future__ import annotations

import logging

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


def check_redis() -> str | None:
    try:
        with redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
    except Exception as exc:
        logger.warning("readiness: redis failed: %s", type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return None


def readiness() -> dict[str, str]:
    """Map each dependency to "ok" or the reason it is not ready."""
    results: dict[str, str] = {}
    for alias in settings.DATABASES:
        results[f"database:{alias}"] = check_database(alias) or "ok"
    results["redis"] = check_redis() or "ok"
    return results
