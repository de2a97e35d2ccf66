"""Hand-written SQL: hot-path statements, advisory locks, and the database functions kept in .sql files.

The hot path: a few statements run as server-side prepared statements.

The ORM costs ~0.3 ms of Python to compile a query and PostgreSQL ~0.1-0.4 ms to plan it, on every call;
the chat turn's handful of fixed statements are written once here and prepared once per connection
(psycopg keeps the statement per connection, and persistent connections keep it alive). The ORM's own
cursors bind on the client and never prepare, so nothing else changes. `DB_PREPARED_STATEMENTS=0` turns
preparing off (e.g. behind a transaction-mode pooler without prepared statement support); the SQL still runs.

Statements run on the Django connection of the alias, so they join its transaction (`transaction.atomic`),
errors arrive as Django's database exceptions, and with query logging on (DEBUG, `CaptureQueriesContext`)
they are logged like ORM queries.

Database functions (search, the audit guard and purge) live one per file in `apps/<app>/sql/<name>.sql` and
migrations apply them with `RunSQLFile` (see its docstring for how a changed file reaches existing databases).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from django.apps import apps as app_registry
from django.db import DatabaseError, connections, migrations

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


# --- database functions in .sql files --------------------------------------------------------------------
def sql_file_path(app_label: str, name: str) -> Path:
    """The file that holds the current definition of database function `name`: apps/<app>/sql/<name>.sql."""
    return Path(app_registry.get_app_config(app_label).path) / "sql" / f"{name}.sql"


def sql_digest(text: str) -> str:
    """A short digest of a .sql file's text, which the migration that applies that text records."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class RunSQLFile(migrations.RunSQL):
    """Apply apps/<app_label>/sql/<name>.sql, the one source of a database function, in a migration.

    The file holds the function's current definition as `CREATE OR REPLACE FUNCTION`, so running it again is
    harmless. To change a function, edit its file and add a migration to the same app that runs
    `RunSQLFile(app_label, name, digest=...)` again: that migration brings databases migrated before the new
    text (a fresh database gets it already from the first migration that applies the file). `digest` is
    `sql_digest` of the text the migration was written for; tests/foundation/test_sql_files.py fails while the
    newest migration applying a file has another digest, so an edited file cannot silently stay out of
    existing databases. A new argument list or result type cannot be replaced: that migration drops the old
    signature first (`RunSQL("DROP FUNCTION ...")`), never the file. Every migration that applies a file runs
    today's text, so a new text must not need objects created after the first of them (PL/pgSQL bodies are
    checked only when called; signatures and LANGUAGE sql bodies when created). docs/architecture.md,
    "Hand-written SQL".
    """

    def __init__(
        self,
        app_label: str,
        name: str,
        *,
        digest: str,
        reverse_sql: str | None = None,
        hints: dict[str, Any] | None = None,
    ) -> None:
        self.file_app_label, self.file_name, self.digest = app_label, name, digest
        super().__init__(sql_file_path(app_label, name).read_text(encoding="utf-8"), reverse_sql, hints=hints)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"digest": self.digest}
        if self.reverse_sql is not None:
            kwargs["reverse_sql"] = self.reverse_sql
        if self.hints:
            kwargs["hints"] = self.hints
        return (self.__class__.__qualname__, [self.file_app_label, self.file_name], kwargs)

    def describe(self) -> str:
        return f"Apply {self.file_app_label}/sql/{self.file_name}.sql"
