"""Help center fixtures: tenant A's demo knowledge base with its help center on, plus unpublished texts."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.context import tenant_context
from apps.helpcenter.models import HelpCenterDomain
from apps.helpcenter.services import domain_add
from apps.knowledge.demo import seed_demo_knowledge
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_update, translation_reject, translation_save, translation_submit
from apps.tenants.models import Tenant
from tests.helpcenter.helpers import HOST


@pytest.fixture
def hc_kb(tenant_a: Tenant) -> KnowledgeBase:
    """The demo help center (en/de/fr/es/ja, eu and us variants), public at /help/tenant-a/help/, with a
    draft-only, an in-review-only and a rejected-only article that must never show."""
    seed_demo_knowledge([tenant_a])
    with tenant_context(tenant_a):
        kb = KnowledgeBase.objects.get(name="Help center")
        kb_update(kb=kb, helpcenter_enabled=True, helpcenter_handle="help")
        translation_save(kb=kb, key="secret-draft", locale="en", title="Draft secret", body="Draft only.")
        review = translation_save(
            kb=kb, key="secret-review", locale="en", title="Review secret", body="In review."
        )
        translation_submit(translation=review)
        rejected = translation_save(
            kb=kb, key="secret-rejected", locale="en", title="Rejected secret", body="Rejected."
        )
        translation_submit(translation=rejected)
        translation_reject(translation=rejected, actor=None, reason="no")
    return kb


@pytest.fixture
def hc_kb_b(tenant_b: Tenant) -> KnowledgeBase:
    """Tenant B's demo help center, public too, at /help/tenant-b/help/."""
    seed_demo_knowledge([tenant_b])
    with tenant_context(tenant_b):
        kb = KnowledgeBase.objects.get(name="Help center")
        kb_update(kb=kb, helpcenter_enabled=True, helpcenter_handle="help")
    return kb


@pytest.fixture
def domain_a(hc_kb: KnowledgeBase, tenant_a: Tenant, alice: Any) -> HelpCenterDomain:
    """Tenant A's help center on its custom domain HOST."""
    return domain_add(host=HOST, tenant=tenant_a, kb_id=hc_kb.pk, actor=alice)
