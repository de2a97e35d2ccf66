"""The demo knowledge base (en, de, fr, es, ja with EU and US variants), loaded by `seed_demo`. Idempotent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_create, kb_import

DEMO_FILE = Path(__file__).parent / "demo_data" / "help_center.jsonl"
DEMO_KB = "Help center"


def seed_demo_knowledge(tenants: list[Any]) -> list[dict[str, Any]]:
    """Create (or refresh) the demo knowledge base in each tenant and index it in this process."""
    lines = DEMO_FILE.read_text(encoding="utf-8").splitlines()
    result = []
    for tenant in tenants:
        with tenant_context(tenant):
            kb = KnowledgeBase.objects.filter(name=DEMO_KB).first() or kb_create(
                tenant=tenant,
                name=DEMO_KB,
                source_locale="en",
                enabled_locales=["de", "fr", "es", "ja"],
                regions=["EU", "US"],
            )
            imported = kb_import(kb=kb, lines=lines, index_now=True)
        result.append({"tenant": tenant.slug, "kb": kb.name, "published": imported.published})
    return result
