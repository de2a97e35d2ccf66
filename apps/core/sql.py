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

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connections

from apps.core import deadlines


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
