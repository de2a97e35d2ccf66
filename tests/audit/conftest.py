"""Audit test fixtures: SQL as the database superuser, i.e. what an attacker with DBA access can do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apps.core.db_admin import admin_configured, admin_connection

SuperuserSql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def superuser_sql() -> SuperuserSql:
    """Run one statement as the superuser with every trigger off (tests using it need transaction=True)."""

    def run(alias: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        assert admin_configured(alias), "the embedded services provide the superuser"
        with admin_connection(alias) as conn, conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    return run
