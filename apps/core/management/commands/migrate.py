"""`migrate` that migrates every silo: the control database, then each region database.

With `--database ALIAS` only that alias is migrated (what the test runner does per alias). The router's
allow_migrate keeps each alias to its own models.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.core.management.commands.migrate import Command as DjangoMigrate


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
        if options["database"] is not None:
            super().handle(*args, **options)
            self._after(options["database"], options)
            return
        for alias in settings.DATABASES:
            if options["verbosity"] >= 1:
                self.stdout.write(self.style.MIGRATE_HEADING(f"Database {alias}:"))
            super().handle(*args, **{**options, "database": alias})
            self._after(alias, options)

    def _after(self, alias: str, options: dict[str, Any]) -> None:
        if alias == "default" and not options["plan"] and not options["app_label"]:
            from apps.tenants.services import region_sync

            region_sync()
