"""Edges of the data-subject request API: an expired archive (404, its evidence stays), malformed bodies (400,
never a 500), the list's query count independent of its length."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.policies.dsr import dsr_archive_build, dsr_archives_expire, dsr_create, dsr_start
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def base(tenant: Tenant) -> str:
    return f"/api/v1/tenants/{tenant.slug}/data-subject-requests/"


def test_expired_archive_is_404_and_its_evidence_stays(
    tenant_a: Tenant, alice: Any, alice_api: APIClient
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email="jane@example.test", actor=alice)
    dsr_start(tenant=tenant_a, dsr=dsr, actor=alice)
    assert dsr_archive_build(tenant=tenant_a, request_id=dsr.pk) is not None
    url = f"{base(tenant_a)}{dsr.pk}/"
    assert alice_api.get(f"{url}archive/").status_code == 200
    assert dsr_archives_expire(now=timezone.now() + timedelta(days=365)) == 1
    assert alice_api.get(f"{url}archive/").status_code == 404
    detail = alice_api.get(url).json()
    assert detail["archive_available"] is False and len(detail["archive"]["sha256"]) == 64


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("", "{not json", "application/json"),
        ("", '["kind", "access"]', "application/json"),
        ("", "kind=access&email=a%40example.test", "text/plain"),
        ("extend/", '{"days": 1e400, "reason": "x"}', "application/json"),
        ("extend/", '{"days": 99999999999999999999999, "reason": "x"}', "application/json"),
        ("reject/", '{"reason": ["a", "b"]}', "application/json"),
        ("reject/", '{"reason": "' + "x" * 1001 + '"}', "application/json"),
    ],
)
def test_malformed_bodies_are_400_or_415_never_500(
    tenant_a: Tenant, alice: Any, alice_api: APIClient, path: str, body: str, content_type: str
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email="jane@example.test", actor=alice)
    url = f"{base(tenant_a)}{dsr.pk}/{path}" if path else base(tenant_a)
    response = alice_api.generic("POST", url, body, content_type=content_type)
    assert response.status_code in (400, 415), (url, response.status_code, response.content)
    assert "jane@example.test" not in response.content.decode()


def test_list_queries_do_not_grow_with_the_page(
    tenant_a: Tenant, alice: Any, alice_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    dsr_create(tenant=tenant_a, kind="access", email="one@example.test", actor=alice)
    alice_api.get(base(tenant_a))  # warm the token/membership caches alike for both counts
    with django_assert_max_num_queries(50) as one:
        assert alice_api.get(base(tenant_a)).status_code == 200
    for i in range(10):
        dsr_create(tenant=tenant_a, kind="erasure", email=f"p{i}@example.test", actor=alice)
    with django_assert_max_num_queries(50) as eleven:
        response = alice_api.get(base(tenant_a))
    assert response.status_code == 200 and response.json()["count"] == 11
    assert len(eleven.captured_queries) == len(one.captured_queries)
