"""The privileged database connection, used only by `migrate` and `manage.py db_roles`, never at runtime.

The hub runs as a non-superuser role (settings.DATABASES). Some set-up needs more: installing pgvector (an
untrusted extension) and handing the audit tables to the NOLOGIN role that owns them (apps/audit/roles.py).
That is done through settings.HUB_DATABASE_ADMIN: the embedded superuser locally, DATABASE_ADMIN_URL and
REGION_<CODE>_DATABASE_ADMIN_URL in production (optional: without them the DBA runs `db_roles --print-sql`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections


def admin_configured(alias: str) -> bool:
    return alias in settings.HUB_DATABASE_ADMIN


@contextmanager
def admin_connection(alias: str) -> Iterator[Any]:
    """An autocommit psycopg connection as the admin, to the database `alias` currently points at.

    The database name is the alias's own (the test runner's `test_…` databases included); host and port may
    differ (an admin URL may bypass a connection pooler).
    """
    import psycopg

    admin = settings.HUB_DATABASE_ADMIN[alias]
    current = connections[alias].settings_dict
    with psycopg.connect(
        host=admin.get("HOST") or current["HOST"],
        port=admin.get("PORT") or current["PORT"],
        user=admin["USER"],
        password=admin["PASSWORD"],
        dbname=current["NAME"],
        connect_timeout=10,
        autocommit=True,
    ) as conn:
        yield conn


def runtime_role(alias: str) -> str:
    """The role the hub connects as on `alias` (what the grants are for)."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_user")
        return str(cursor.fetchone()[0])


# Objects a migrate run as the admin left behind (before the hub had a runtime role: older embedded data
# directories, Compose volumes) move to the runtime role, so that Django's migrations, run as that role, can
# alter them. Extension members stay where they are.
ADOPT_SQL = """
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS name,
               CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                              WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relowner = '{admin}'::regrole
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I', r.kind, r.name, '{runtime}');
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proowner = '{admin}'::regrole
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.name, '{runtime}');
    END LOOP;
END $$
"""


def db_prepare(*, alias: str) -> bool:
    """Before migrating `alias`: install pgvector, and give the runtime role what an admin-run migrate made.

    Returns False (and does nothing) when no admin connection is configured for the alias.
    """
    if not admin_configured(alias):
        return False
    runtime = runtime_role(alias)
    with admin_connection(alias) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        admin = conn.execute("SELECT current_user").fetchone()[0]
        if admin != runtime:
            conn.execute(ADOPT_SQL.format(admin=admin.replace("'", "''"), runtime=runtime.replace("'", "''")))
    return True
