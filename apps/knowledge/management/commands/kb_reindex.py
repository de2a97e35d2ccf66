"""Move a knowledge base to another embedding model: `kb_reindex --tenant SLUG --kb NAME [--model ID]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.context import tenant_context
from apps.knowledge.embeddings import EmbeddingError
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_reindex_start
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Re-index a knowledge base with the configured embedding model, or with --model (the id of a "
        "provider in HUB_EMBEDDING_PROVIDER or HUB_EMBEDDING_PREVIOUS_PROVIDERS). A worker builds the "
        "vectors; search keeps the old ones until they are all there."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--kb", required=True, help="knowledge base name")
        parser.add_argument("--model", default="", help="embedding model id (default: the configured one)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.select_related("home_region").filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant']!r}.")
        with tenant_context(tenant):
            kb = KnowledgeBase.objects.filter(name=options["kb"]).first()
            if kb is None:
                raise CommandError(f"No knowledge base {options['kb']!r} in {tenant.slug}.")
            try:
                started = kb_reindex_start(kb=kb, model_id=options["model"])
            except EmbeddingError as exc:
                raise CommandError(str(exc)) from None
        if started:
            self.stdout.write(f"Re-indexing {kb.name} with {kb.reindex_model} (was {kb.embedding_model}).")
        else:
            self.stdout.write(f"{kb.name} is already on {kb.embedding_model}.")
