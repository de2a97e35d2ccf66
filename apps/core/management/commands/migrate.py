"""`migrate` that migrates every silo: the control database, then each region database.

With `--database ALIAS` only that alias is migrated (what the test runner does per alias). The router's
allow_migrate keeps each alias to its own models.

Migrations run as the runtime role. Where a privileged connection is configured (settings.HUB_DATABASE_ADMIN)
each alias is prepared before (pgvector). Apps add their own steps around each alias through
apps/core/migrate_hooks.py: audit hands its objects back to the runtime role while audit migrations are
pending and locks them after (they belong to the NOLOGIN audit owner role), tenants syncs the Region rows.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.core.management.commands.migrate import Command as DjangoMigrate

from apps.core.db_admin import db_prepare
from apps.core.migrate_hooks import migrate_hooks


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
                self._after(alias, options)
            if not options["plan"] and not options["app_label"]:
                for hooks in migrate_hooks():
                    if hooks.migrated is not None:
                        hooks.migrated(alias)

    def _before(self, alias: str, options: dict[str, Any]) -> None:
        if options["plan"] or not db_prepare(alias=alias):
            return
        for hooks in migrate_hooks():
            if hooks.before is not None:
                hooks.before(alias)

    def _after(self, alias: str, options: dict[str, Any]) -> None:
        if options["plan"]:
            return
        for hooks in migrate_hooks():
            warning = hooks.after(alias) if hooks.after is not None else None
            if warning:
                self.stderr.write(warning)
