"""Texts and URLs the knowledge editor tests share."""

from __future__ import annotations

from django.urls import reverse

from apps.knowledge.models import KnowledgeBase
from apps.tenants.models import Tenant

EN = "# Returns\n\nYou can return items within 30 days.\n\n## Refunds\n\nRefunds take 5 days."
DE = "# Rückgabe\n\nSie können Artikel innerhalb von 30 Tagen zurückgeben.\n\n## Erstattung\n\nDauert 5 Tage."


def editor_url(tenant: Tenant, kb: KnowledgeBase, locale: str, key: str = "returns", region: str = "") -> str:
    """The side-by-side editor of one text (and regional variant)."""
    path = reverse(
        "knowledge:editor", kwargs={"tenant_slug": tenant.slug, "kb_id": kb.pk, "key": key, "locale": locale}
    )
    return f"{path}?region={region}" if region else path
