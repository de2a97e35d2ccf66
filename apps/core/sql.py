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
from collections.abc import Mapping
from typing import Any

import psycopg
from django.db import connections


def fetch(alias: str, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement on `alias` with server-side parameters, prepared, and return its rows."""
    connection = connections[alias]
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        rows = cursor.fetchall() if cursor.description is not None else []
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": sql, "time": f"{time.monotonic() - started:.3f}", "alias": alias}
        )
    return rows
