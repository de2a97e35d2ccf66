"""`migrate` that migrates every silo: the control database, then each region database.

With `--database ALIAS` only that alias is migrated (what the test runner does per alias). The router's
allow_migrate keeps each alias to its own models.

Migrations run as the runtime role. Where a privileged connection is configured (settings.HUB_DATABASE_ADMIN)
each alias is prepared before (pgvector; audit objects handed back to the runtime role while audit migrations
are pending) and locked after: the audit tables and functions belong to the NOLOGIN audit owner role
(apps/audit/roles.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.core.management.commands.migrate import Command as DjangoMigrate

from apps.core.db_admin import db_prepare


class Command(DjangoMigrate):
    help = "Migrate the control database and every region database (or one alias with --database)."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(database=None)

    def get_check_kwargs(self, options: Any) -> Any:
        kwargs = super().get_check_kwargs(options)
        database = options["database"]
        kwargs["databases"] = list(settings.DATABASES) if database is None else [database]
        return kwargs

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = list(settings.DATABASES) if options["database"] is None else [options["database"]]
        for alias in aliases:
            if options["database"] is None and options["verbosity"] >= 1:
                self.stdout.write(self.style.MIGRATE_HEADING(f"Database {alias}:"))
            self._before(alias, options)
            try:
                super().handle(*args, **{**options, "database": alias})
            finally:  # a failed migration must not leave the audit objects with the runtime role
                self._lock(alias, options)
            if alias == "default" and not options["plan"] and not options["app_label"]:
                from apps.tenants.services import region_sync

                region_sync()

    def _before(self, alias: str, options: dict[str, Any]) -> None:
        if options["plan"] or not db_prepare(alias=alias):
            return
        from apps.audit.roles import audit_migrations_pending, audit_roles_apply

        if audit_migrations_pending(alias=alias):
            audit_roles_apply(alias=alias, lock=False)

    def _lock(self, alias: str, options: dict[str, Any]) -> None:
        if options["plan"]:
            return
        from apps.audit.roles import audit_roles_apply, audit_roles_unprotected

        if not audit_roles_apply(alias=alias) and audit_roles_unprotected(alias=alias):
            self.stderr.write(
                f"WARNING: {alias}: the hub's database role can change or delete audit records (it is a "
                "superuser or owns the audit tables). Set the *_DATABASE_ADMIN_URL variables or run the "
                "SQL of `manage.py db_roles --print-sql` as an administrator (docs/deploy.md)."
            )
