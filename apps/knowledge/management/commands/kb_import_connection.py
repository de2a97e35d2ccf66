"""Import knowledge articles from a connection:
`kb_import_connection --tenant SLUG --kb NAME --connection NAME [--publish] [--index-now]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.context import tenant_context
from apps.core.errors import HubError
from apps.integrations.models import Connection
from apps.knowledge.importing import kb_import_from_connection
from apps.knowledge.models import KnowledgeBase
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Import the articles of a ServiceNow (kb_knowledge) or Salesforce Knowledge connection into a "
        "knowledge base. Records that do not map are listed and skipped; a vendor failure imports nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--kb", required=True, help="knowledge base name")
        parser.add_argument("--connection", required=True, help="connection name")
        parser.add_argument(
            "--publish",
            action="store_true",
            help="publish new and changed texts (default: submit for review)",
        )
        parser.add_argument("--index-now", action="store_true", help="index in this process, not in Celery")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.select_related("home_region").filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        with tenant_context(tenant):
            kb = KnowledgeBase.objects.filter(name=options["kb"]).first()
            if kb is None:
                raise CommandError(f"No knowledge base {options['kb']!r} in tenant {tenant.slug}.")
            connection = Connection.objects.filter(name=options["connection"]).first()
            if connection is None:
                raise CommandError(f"No connection {options['connection']!r} in tenant {tenant.slug}.")
            try:
                result = kb_import_from_connection(
                    kb=kb, connection=connection, publish=options["publish"], index_now=options["index_now"]
                )
            except HubError as exc:
                raise CommandError(str(exc)) from exc
        for error in result.errors:
            self.stderr.write(str(error))
        self.stdout.write(
            f"Read {result.read} records from {connection.name}: {result.saved} texts saved, "
            f"{result.unchanged} unchanged, {result.published} published, {result.skipped} skipped, "
            f"{len(result.errors)} not imported."
        )
        if result.errors:
            raise CommandError(f"{len(result.errors)} records were not imported (listed above).")
