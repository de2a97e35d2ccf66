"""Export a knowledge base as JSON lines (the kb_import format): `kb_export --tenant SLUG --kb NAME`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.selectors import kb_export_rows
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = "Export every translation and regional variant of a knowledge base as JSON lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, nargs="?", help="output file (default: standard output)")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--kb", required=True, help="knowledge base name")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.select_related("home_region").filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        with tenant_context(tenant):
            kb = KnowledgeBase.objects.filter(name=options["kb"]).first()
            if kb is None:
                raise CommandError(f"No knowledge base {options['kb']!r} in {tenant.slug}.")
            lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in kb_export_rows(kb=kb)]
        if options["file"] is None:
            self.stdout.write("".join(lines), ending="")
        else:
            options["file"].write_text("".join(lines), encoding="utf-8")
