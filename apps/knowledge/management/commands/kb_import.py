"""Import a knowledge base from JSON lines: `kb_import --tenant SLUG --kb NAME FILE.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_create, kb_import
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = "Import articles from a JSONL file, one transaction per file (nothing is half-imported)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--kb", required=True, help="knowledge base name (created when missing)")
        parser.add_argument("--source-locale", help="source locale of a new knowledge base")
        parser.add_argument("--index-now", action="store_true", help="index in this process, not in Celery")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.select_related("home_region").filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        path: Path = options["file"]
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
        with tenant_context(tenant):
            kb = KnowledgeBase.objects.filter(name=options["kb"]).first()
            try:
                if kb is None:
                    kb = self._create(tenant, options, lines)
                result = kb_import(kb=kb, lines=lines, index_now=options["index_now"])
            except ValidationFailed as exc:
                details = [m for messages in exc.errors.values() for m in messages]
                raise CommandError("\n".join([str(exc), *details])) from exc
        self.stdout.write(f"Imported {result.saved} texts ({result.published} published) into {kb.name}.")

    def _create(self, tenant: Tenant, options: dict[str, Any], lines: list[str]) -> KnowledgeBase:
        """A new knowledge base enables the locales and regions its file uses."""
        locales: list[str] = []
        regions: list[str] = []
        for raw in lines:
            try:
                row = json.loads(raw)
            except ValueError:
                continue  # reported with its line number by the import
            if isinstance(row, dict):
                if isinstance(row.get("locale"), str):
                    locales.append(row["locale"])
                if isinstance(row.get("region"), str):
                    regions.append(row["region"])
        source = options["source_locale"] or tenant.default_locale
        return kb_create(
            tenant=tenant,
            name=options["kb"],
            source_locale=source,
            enabled_locales=list(dict.fromkeys(locales)),
            regions=list(dict.fromkeys(regions)),
        )
