"""Database functions live in .sql files (apps/<app>/sql/<name>.sql): a migrated database holds the file.

Each file is applied to a scratch schema next to the installed function and PostgreSQL prints both
(pg_get_functiondef: arguments, result, language, attributes, settings and the body as stored), so layout
outside the body does not matter and everything that does is compared. Owners and grants are not: the
audit roles set them (apps/audit/roles.py).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
from django.apps import apps as app_registry
from django.db import connections, router, transaction
from django.db.backends.utils import CursorWrapper
from django.db.migrations.loader import MigrationLoader

from apps.core.sql import RunSQLFile, sql_digest, sql_file_path

SCRATCH = "sql_file_check"
CREATE = re.compile(r"\bCREATE\s+(OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(", re.IGNORECASE)


def _sql_files() -> list[tuple[str, str]]:
    return [
        (config.label, path.stem)
        for config in app_registry.get_app_configs()
        if config.name.startswith("apps.")
        for path in sorted(Path(config.path, "sql").glob("*.sql"))
    ]


SQL_FILES = _sql_files()
LOADER = MigrationLoader(None, ignore_no_migrations=True)


def _newest_application(app_label: str, name: str) -> tuple[tuple[str, str], RunSQLFile] | None:
    """The migration that applies the file last, and its operation (a file's own app applies it)."""
    applying = [
        (key, operation)
        for key, migration in LOADER.disk_migrations.items()
        if key in LOADER.graph.nodes
        for operation in migration.operations
        if isinstance(operation, RunSQLFile)
        and (operation.file_app_label, operation.file_name) == (app_label, name)
    ]
    if not applying:
        return None
    return max(applying, key=lambda item: len(LOADER.graph.forwards_plan(item[0])))


def digest_problem(app_label: str, name: str, text: str) -> str | None:
    """Why databases migrated before would not hold `text`, or None when the newest migration applies it."""
    newest = _newest_application(app_label, name)
    if newest is None:
        return f"no migration applies {app_label}/sql/{name}.sql"
    (migration_app, migration_name), operation = newest
    if migration_app != app_label:
        return f"{migration_app}.{migration_name} applies {app_label}'s {name}.sql: only {app_label} may"
    if operation.digest != sql_digest(text):
        return (
            f"{app_label}/sql/{name}.sql changed since {migration_app}.{migration_name} applied it, so"
            f" databases migrated before keep the old function. Add a migration to {app_label} with"
            f' RunSQLFile("{app_label}", "{name}", digest="{sql_digest(text)}", ...).'
        )
    return None


def _silo_aliases(app_label: str, name: str) -> list[str]:
    """The databases the newest migration applying the file runs it on."""
    newest = _newest_application(app_label, name)
    assert newest is not None
    hints = newest[1].hints
    return [alias for alias in connections if router.allow_migrate(alias, app_label, **hints)]


def _definitions(cursor: CursorWrapper, schema: str, name: str) -> list[str]:
    cursor.execute(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s AND p.proname = %s ORDER BY 1",
        [schema, name],
    )
    qualified = f" {schema}.{name}("
    return [row[0].replace(qualified, f" public.{name}(", 1) for row in cursor.fetchall()]


def installed_and_file(alias: str, name: str, text: str) -> tuple[list[str], list[str]]:
    """The definitions of `name` installed on `alias` and those `text` creates, as PostgreSQL prints them."""
    connection = connections[alias]
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {SCRATCH}")
        # Names the file creates land in the scratch schema; bodies are not checked (pg_dump does the same),
        # so a function may call one created by another file.
        cursor.execute(f"SET LOCAL search_path = {SCRATCH}, public")
        cursor.execute("SET LOCAL check_function_bodies = off")
        for statement in connection.ops.prepare_sql_script(text):
            cursor.execute(statement)
        installed, from_file = _definitions(cursor, "public", name), _definitions(cursor, SCRATCH, name)
        transaction.set_rollback(True, using=alias)  # the scratch schema and the settings go
    return installed, from_file


def _differences(alias: str, name: str, text: str) -> str:
    installed, from_file = installed_and_file(alias, name, text)
    return "\n".join(
        difflib.unified_diff(
            "\n\n".join(installed).splitlines(),
            "\n\n".join(from_file).splitlines(),
            f"installed on {alias}",
            "from the file",
            lineterm="",
        )
    )


def _text(app_label: str, name: str) -> str:
    return sql_file_path(app_label, name).read_text(encoding="utf-8")


def _one_line_header(text: str) -> str:
    """The file with its comments dropped and everything before the body on one line."""
    head, delimiter, body = text.partition("\nAS $")
    code = " ".join(line for line in head.splitlines() if not line.startswith("--"))
    return " ".join(code.split()) + delimiter + body


def test_there_are_sql_files() -> None:
    assert {("audit", "audit_purge"), ("knowledge", "knowledge_search_fuse")} <= set(SQL_FILES)


@pytest.mark.parametrize(("app_label", "name"), SQL_FILES)
def test_a_file_replaces_one_function_named_after_it(app_label: str, name: str) -> None:
    created = CREATE.findall(_text(app_label, name))
    assert [(bool(or_replace), function) for or_replace, function in created] == [(True, name)]
    assert not re.search(r"\bDROP\s", _text(app_label, name), re.IGNORECASE), "drops belong in the migration"


@pytest.mark.parametrize(("app_label", "name"), SQL_FILES)
def test_the_newest_migration_applying_a_file_applies_this_text(app_label: str, name: str) -> None:
    assert digest_problem(app_label, name, _text(app_label, name)) is None


def test_an_edited_file_needs_a_migration() -> None:
    edited = _text("knowledge", "knowledge_search_fuse").replace("LIMIT p_m", "LIMIT p_m + 1", 1)
    problem = digest_problem("knowledge", "knowledge_search_fuse", edited)
    assert problem is not None and "Add a migration to knowledge" in problem
    assert digest_problem("knowledge", "knowledge_search_none", edited) == (
        "no migration applies knowledge/sql/knowledge_search_none.sql"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("app_label", "name"), SQL_FILES)
def test_the_installed_function_is_the_file(app_label: str, name: str) -> None:
    text = _text(app_label, name)
    silo = _silo_aliases(app_label, name)
    assert silo
    for alias in connections:
        if alias in silo:
            installed, from_file = installed_and_file(alias, name, text)
            assert len(from_file) == 1
            assert installed == from_file, _differences(alias, name, text)
        else:
            with connections[alias].cursor() as cursor:
                assert _definitions(cursor, "public", name) == [], f"{name} is installed on {alias}"


@pytest.mark.django_db
@pytest.mark.parametrize(("app_label", "name"), SQL_FILES)
def test_a_file_applies_in_a_new_session(app_label: str, name: str) -> None:
    """A migration may be the first statement of its session (pgvector's settings exist once it loads)."""
    for alias in _silo_aliases(app_label, name):
        connection = connections[alias]
        with connection.get_new_connection(connection.get_connection_params()) as session:
            session.execute(f"CREATE SCHEMA {SCRATCH}")
            session.execute(f"SET LOCAL search_path = {SCRATCH}, public")
            for statement in connection.ops.prepare_sql_script(_text(app_label, name)):
                session.execute(statement)
            session.rollback()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("app_label", "name", "old", "new"),
    [
        pytest.param("knowledge", "knowledge_search_fuse", "LIMIT p_m", "LIMIT p_m + 1", id="body"),
        pytest.param(
            "knowledge", "knowledge_search_fts", "\n    END LOOP;", "\n  END LOOP;", id="body-spaces"
        ),
        pytest.param("knowledge", "knowledge_search_fuse", "SET enable_seqscan = on\n", "", id="setting"),
        pytest.param(
            "knowledge", "knowledge_search_chunks", "LANGUAGE sql", "LANGUAGE sql STABLE", id="volatility"
        ),
        pytest.param("audit", "audit_purge", "SECURITY DEFINER\n", "", id="security-definer"),
        pytest.param("audit", "audit_reject_change", "RETURNS trigger", "RETURNS event_trigger", id="result"),
    ],
)
def test_a_file_that_differs_from_the_installed_function_is_told_apart(
    app_label: str, name: str, old: str, new: str
) -> None:
    text = _text(app_label, name)
    assert text.count(old) >= 1
    alias = "region_eu"
    installed, from_file = installed_and_file(alias, name, text.replace(old, new, 1))
    assert len(installed) == len(from_file) == 1
    assert installed != from_file
    # Layout outside the body is not a difference.
    assert _one_line_header(text) != text
    installed, from_file = installed_and_file(alias, name, _one_line_header(text))
    assert installed == from_file
