"""seed_demo loads the multilingual demo knowledge base into both tenants, idempotently."""

from __future__ import annotations

import pytest

from apps.core.context import tenant_context
from apps.knowledge.demo import seed_demo_knowledge
from apps.knowledge.models import Chunk, Revision
from apps.knowledge.selectors import knowledge_search
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_seed_demo_knowledge_is_idempotent(tenant_a: Tenant, tenant_b: Tenant) -> None:
    first = seed_demo_knowledge([tenant_a, tenant_b])
    assert [r["published"] for r in first] == [67, 67]
    with tenant_context(tenant_b):
        counts = (Revision.objects.count(), Chunk.objects.count())
    assert [r["published"] for r in seed_demo_knowledge([tenant_a, tenant_b])] == [0, 0]
    with tenant_context(tenant_b):
        assert (Revision.objects.count(), Chunk.objects.count()) == counts
    hits = knowledge_search(tenant=tenant_b, query="Kann ich mit Klarna bezahlen?", locale="de", region="EU")
    assert (hits[0].article_key, hits[0].region) == ("payment-methods", "eu")
