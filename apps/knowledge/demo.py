"""The demo knowledge base (en, de, fr, es, ja with EU and US variants), loaded by `seed_demo`. Idempotent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_create, kb_import

DEMO_FILE = Path(__file__).parent / "demo_data" / "help_center.jsonl"
DEMO_KB = "Help center"


def seed_demo_knowledge(tenants: list[Any]) -> list[dict[str, Any]]:
    """Create (or refresh) the demo knowledge base in each tenant and index it in this process."""
    # Regional variants only for the regions this deployment runs (the demo has eu and us ones).
    regions = [code for code in ("eu", "us") if code in settings.HUB_REGIONS]
    lines = [
        line
        for line in DEMO_FILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("region") in (None, *regions)
    ]
    result = []
    for tenant in tenants:
        with tenant_context(tenant):
            kb = KnowledgeBase.objects.filter(name=DEMO_KB).first() or kb_create(
                tenant=tenant,
                name=DEMO_KB,
                source_locale="en",
                enabled_locales=["de", "fr", "es", "ja"],
                regions=regions,
            )
            imported = kb_import(kb=kb, lines=lines, index_now=True)
        result.append({"tenant": tenant.slug, "kb": kb.name, "published": imported.published})
    return result
