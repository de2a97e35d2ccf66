"""`flush` that leaves the audit tables to the privileged connection.

The runtime role cannot TRUNCATE the audit tables (nor can anyone while their guard trigger is on), so
Django's flush (which the test runner's transactional tests run after each test) truncates every other
table, and empties the audit tables through the admin connection (settings.HUB_DATABASE_ADMIN) with the
triggers bypassed for that one statement. Without an admin connection the audit tables are left as they are:
an application that can empty its audit log would not have an append-only one.
"""

from __future__ import annotations

import contextlib
from importlib import import_module
from typing import Any

from django.apps import apps
from django.core.management.base import CommandError
from django.core.management.color import no_style
from django.core.management.commands.flush import Command as DjangoFlush
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections

from apps.audit.roles import CONTROL_TABLES, REGION_TABLES
from apps.core.db_admin import admin_configured, admin_connection

PROTECTED = {*REGION_TABLES, *CONTROL_TABLES}


class Command(DjangoFlush):
    def handle(self, **options: Any) -> None:
        database = options["database"]
        connection = connections[database]
        if options["interactive"]:
            confirm = input(
                f"This will IRREVERSIBLY DESTROY all data in the {connection.settings_dict['NAME']!r} "
                "database. Type 'yes' to continue: "
            )
            if confirm != "yes":
                self.stdout.write("Flush cancelled.")
                return
        for app_config in apps.get_app_configs():  # as Django's flush: register the apps' signal handlers
            with contextlib.suppress(ImportError):
                import_module(".management", app_config.name)
        tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
        kept = [t for t in tables if t in PROTECTED]
        sql_list = connection.ops.sql_flush(
            no_style(),
            [t for t in tables if t not in PROTECTED],
            reset_sequences=options.get("reset_sequences", True),
            allow_cascade=options.get("allow_cascade", False),
        )
        try:
            connection.ops.execute_sql_flush(sql_list)
        except Exception as exc:
            raise CommandError(f"Database {connection.settings_dict['NAME']} couldn't be flushed.") from exc
        if kept and admin_configured(database):
            with admin_connection(database) as conn, conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '30s'")  # a stuck session fails the flush
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute("TRUNCATE " + ", ".join(f"public.{t}" for t in kept))
        elif kept:
            self.stderr.write(f"kept the audit tables ({', '.join(kept)}): they are append-only")
        if sql_list and not options.get("inhibit_post_migrate", False):
            emit_post_migrate_signal(options["verbosity"], options["interactive"], database)
