"""Who owns the audit objects: a NOLOGIN role, so the runtime role cannot change or remove audit records.

After `migrate` (as the runtime role) the privileged connection (apps/core/db_admin.py) hands the audit
tables and functions to settings.HUB_DB_AUDIT_OWNER_ROLE and leaves the runtime role SELECT and INSERT (SELECT
only on checkpoints: the purge function writes them) and EXECUTE on audit_purge(), a SECURITY DEFINER
function. Not being the owner, the runtime role cannot DELETE, UPDATE, TRUNCATE, disable the triggers or
replace the functions; not being a member of the owner role, it cannot SET ROLE to it.
"""

from __future__ import annotations

from django.conf import settings
from django.db.migrations.executor import MigrationExecutor

from apps.core.db_admin import admin_configured, admin_connection, runtime_role

# table -> what the runtime role may do with it
REGION_TABLES = {"audit_auditevent": "SELECT, INSERT", "audit_auditcheckpoint": "SELECT"}
CONTROL_TABLES = {
    "audit_platformauditevent": "SELECT, INSERT",
    "audit_platformauditcheckpoint": "SELECT",
    "audit_auditanchor": "SELECT, INSERT",
}
# function -> what the runtime role may do with it ("" for nothing: a trigger function needs no grant)
REGION_FUNCTIONS = {"audit_reject_change()": "", "audit_purge(bigint, timestamptz)": "EXECUTE"}
CONTROL_FUNCTIONS = {"audit_reject_change()": ""}


def _objects(alias: str) -> tuple[dict[str, str], dict[str, str]]:
    if alias.startswith("region_"):
        return REGION_TABLES, REGION_FUNCTIONS
    return CONTROL_TABLES, CONTROL_FUNCTIONS


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def audit_roles_sql(
    *, alias: str, runtime: str, owner: str, existing: set[str] | None = None, lock: bool = True
) -> list[str]:
    """The statements that hand the audit objects of `alias` to the owner role (or back, `lock=False`).

    `existing` limits them to the objects present (None: all, for --print-sql).
    """
    tables, functions = _objects(alias)
    rt, ow = _quote(runtime), _quote(owner)
    literal_owner, literal_runtime = owner.replace("'", "''"), runtime.replace("'", "''")
    statements = [
        "DO $$ BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{literal_owner}') THEN "
        f"CREATE ROLE {ow} NOLOGIN; END IF; END $$",
        # A superuser counts as a member of every role: either would make the protection void.
        "DO $$ BEGIN "
        f"IF pg_has_role('{literal_runtime}', '{literal_owner}', 'MEMBER') THEN "
        f"RAISE EXCEPTION 'the runtime role % is a superuser or a member of %: it could bypass the audit "
        f"log protection', '{literal_runtime}', '{literal_owner}'; END IF; END $$",
    ]
    new_owner = ow if lock else rt
    for table, grant in tables.items():
        if existing is not None and table not in existing:
            continue
        statements.append(f"ALTER TABLE public.{table} OWNER TO {new_owner}")
        if lock:
            statements.append(f"REVOKE ALL ON public.{table} FROM PUBLIC, {rt}")
            statements.append(f"GRANT {grant} ON public.{table} TO {rt}")
            # Reading the id sequence (what pg_dump does) is harmless; nextval/setval stay the owner's.
            statements.append(
                "DO $$ BEGIN EXECUTE format('GRANT SELECT ON SEQUENCE %s TO %I', "
                f"pg_get_serial_sequence('public.{table}', 'id'), '{literal_runtime}'); END $$"
            )
    for function, grant in functions.items():
        if existing is not None and function not in existing:
            continue
        statements.append(f"ALTER FUNCTION public.{function} OWNER TO {new_owner}")
        if lock:
            statements.append(f"REVOKE ALL ON FUNCTION public.{function} FROM PUBLIC, {rt}")
            if grant:
                statements.append(f"GRANT {grant} ON FUNCTION public.{function} TO {rt}")
    return statements


def _existing(conn: object, alias: str) -> set[str]:
    tables, functions = _objects(alias)
    found = set()
    for table in tables:
        if conn.execute("SELECT to_regclass(%s)", [f"public.{table}"]).fetchone()[0]:  # type: ignore[attr-defined]
            found.add(table)
    for function in functions:
        if conn.execute("SELECT to_regprocedure(%s)", [f"public.{function}"]).fetchone()[0]:  # type: ignore[attr-defined]
            found.add(function)
    return found


def audit_roles_apply(*, alias: str, lock: bool = True) -> bool:
    """Hand the audit objects of `alias` to the owner role (after migrate), or back (`lock=False`).

    Returns False when no admin connection is configured (the DBA then runs `db_roles --print-sql`).
    """
    if not admin_configured(alias):
        return False
    runtime = runtime_role(alias)
    with admin_connection(alias) as conn, conn.transaction():
        existing = _existing(conn, alias)
        for statement in audit_roles_sql(
            alias=alias,
            runtime=runtime,
            owner=settings.HUB_DB_AUDIT_OWNER_ROLE,
            existing=existing,
            lock=lock,
        ):
            conn.execute(statement)
    return True


def audit_roles_unprotected(*, alias: str) -> bool:
    """Tell whether the runtime role could alter the audit records of `alias` (superuser, or the owner)."""
    from django.db import connections

    tables = list(_objects(alias)[0])
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper OR EXISTS (SELECT 1 FROM pg_class c "
            "  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' "
            "  WHERE c.relname = ANY(%s) AND pg_has_role(c.relowner, 'MEMBER')) "
            "FROM pg_roles WHERE rolname = current_user",
            [tables],
        )
        return bool(cursor.fetchone()[0])


def audit_migrations_pending(*, alias: str) -> bool:
    """Tell whether migrating `alias` will run audit migrations (which need the runtime role as owner)."""
    from django.db import connections

    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return any(migration.app_label == "audit" for migration, _ in plan)


def audit_roles_before_migrate(alias: str) -> None:
    """Give the audit objects back to the runtime role while audit migrations are pending (only the owner may
    change them); a `migrate` step (apps/core/migrate_hooks.py)."""
    if audit_migrations_pending(alias=alias):
        audit_roles_apply(alias=alias, lock=False)


def audit_roles_after_migrate(alias: str) -> str | None:
    """Lock the audit objects again after migrating `alias`, or warn when nothing protects them; a `migrate`
    step (apps/core/migrate_hooks.py)."""
    if not audit_roles_apply(alias=alias) and audit_roles_unprotected(alias=alias):
        return (
            f"WARNING: {alias}: the hub's database role can change or delete audit records (it is a "
            "superuser or owns the audit tables). Set the *_DATABASE_ADMIN_URL variables or run the "
            "SQL of `manage.py db_roles --print-sql` as an administrator (docs/deploy.md)."
        )
    return None
