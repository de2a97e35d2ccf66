"""`manage.py db_roles [--database ALIAS] [--print-sql]`: give the audit objects to their owner role.

`migrate` does this itself when a privileged connection is configured (settings.HUB_DATABASE_ADMIN). Without
one, a DBA runs the SQL this command prints (`--print-sql`), once per database and again after each release
whose migrations touch the audit app. See docs/deploy.md, "Database roles".
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.roles import audit_roles_apply, audit_roles_sql
from apps.core.db_admin import admin_configured, db_prepare


class Command(BaseCommand):
    help = "Hand the audit tables and functions to the audit owner role, or print the SQL for a DBA."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", choices=list(settings.DATABASES), help="Only this alias.")
        parser.add_argument("--print-sql", action="store_true", help="Print the SQL instead of running it.")
        parser.add_argument(
            "--runtime-role", help="The role the hub connects as (default: the user of each database URL)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = [options["database"]] if options["database"] else list(settings.DATABASES)
        owner = settings.HUB_DB_AUDIT_OWNER_ROLE
        for alias in aliases:
            config = settings.DATABASES[alias]
            if options["print_sql"]:
                runtime = options["runtime_role"] or config["USER"]
                self.stdout.write(
                    f"-- {alias}: run as an administrator, connected to database {config['NAME']}"
                )
                self.stdout.write("CREATE EXTENSION IF NOT EXISTS vector;")
                for statement in audit_roles_sql(alias=alias, runtime=runtime, owner=owner):
                    self.stdout.write(statement + ";")
                self.stdout.write("")
                continue
            if not admin_configured(alias):
                raise CommandError(
                    f"No privileged connection for {alias}: set its *_DATABASE_ADMIN_URL, or run the SQL of "
                    "`manage.py db_roles --print-sql` as an administrator."
                )
            db_prepare(alias=alias)
            audit_roles_apply(alias=alias)
            self.stdout.write(f"{alias}: audit objects owned by {owner}")
