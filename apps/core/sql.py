"""Hand-written SQL for the few statements on a hot path, run as server-side prepared statements.

The ORM costs ~0.3 ms of Python to compile a query and PostgreSQL ~0.1-0.4 ms to plan it, on every call;
the chat turn's handful of fixed statements are written once here and prepared once per connection
(psycopg keeps the statement per connection, and persistent connections keep it alive). The ORM's own
cursors bind on the client and never prepare, so nothing else changes. `DB_PREPARED_STATEMENTS=0` turns
preparing off (e.g. behind a transaction-mode pooler without prepared statement support); the SQL still runs.

Statements run on the Django connection of the alias, so they join its transaction (`transaction.atomic`),
errors arrive as Django's database exceptions, and with query logging on (DEBUG, `CaptureQueriesContext`)
they are logged like ORM queries.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import DatabaseError, connections

from apps.core import deadlines

logger = logging.getLogger(__name__)


@contextmanager
def prepared_cursor(alias: str, *, statements: Sequence[str]) -> Iterator[psycopg.Cursor[Any]]:
    """A server-side binding cursor on the Django connection of `alias`; execute with `prepare=True`.

    `statements` are what the caller will run, for the query log (DEBUG, `CaptureQueriesContext`).
    """
    connection = connections[alias]
    connection.ensure_connection()
    started = time.monotonic()
    # Watched like the ORM's statements (apps/core/deadlines.py): a stalled server cannot hang the turn.
    with (
        deadlines.db_call(connection),
        connection.wrap_database_errors,
        psycopg.Cursor(connection.connection) as cursor,
    ):
        yield cursor
    if connection.queries_logged:
        elapsed = f"{time.monotonic() - started:.3f}"
        connection.queries_log.extend({"sql": sql, "time": elapsed, "alias": alias} for sql in statements)


def fetch(alias: str, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement on `alias` with server-side parameters, prepared, and return its rows."""
    with prepared_cursor(alias, statements=[sql]) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if cursor.description is not None else []


# --- advisory locks --------------------------------------------------------------------------------------
# A key is one signed 64-bit integer (`lock_key`), or a (class, id) pair locked as `hashtext(class), id`,
# the two-integer form the audit chain shares with its SQL function (apps/audit/sql/audit_purge.sql).
LockKey = int | tuple[str, int]


def lock_key(namespace: str, *parts: object) -> int:
    """A signed 64-bit advisory-lock key for one named resource, stable across processes and releases."""
    text = ":".join([namespace, *(str(part) for part in parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def _lock_call(function: str, key: LockKey) -> tuple[str, list[Any]]:
    if isinstance(key, tuple):
        return f"SELECT {function}(hashtext(%s), %s::integer)", list(key)
    return f"SELECT {function}(%s)", [key]


def advisory_xact_lock(*, using: str, key: LockKey) -> None:
    """Wait for the lock on `key` until the current transaction ends (call inside `transaction.atomic`)."""
    with connections[using].cursor() as cursor:
        cursor.execute(*_lock_call("pg_advisory_xact_lock", key))


def advisory_try_lock(*, using: str, key: LockKey) -> bool:
    """Take the session-level lock on `key` if it is free; it lasts until `advisory_unlock` or disconnect."""
    with connections[using].cursor() as cursor:
        cursor.execute(*_lock_call("pg_try_advisory_lock", key))
        return bool(cursor.fetchone()[0])


def advisory_unlock(*, using: str, key: LockKey) -> None:
    """Release a session-level lock; a connection that broke has released it already (and is closed)."""
    try:
        with connections[using].cursor() as cursor:
            cursor.execute(*_lock_call("pg_advisory_unlock", key))
    except DatabaseError:
        logger.warning("advisory unlock failed; the connection is gone and so is the lock")
        connections[using].close()
