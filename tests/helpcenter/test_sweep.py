"""The cross-tenant sweep of the public help center: every public URL, walked from the URL configuration."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.services import kb_update
from apps.tenants.models import Tenant
from tests.sweep import public_kwargs_for, public_urls

pytestmark = pytest.mark.django_db


def _paths(org: str, handle: str, key: str) -> list[str]:
    return [
        reverse(url.name, kwargs=public_kwargs_for(url, org=org, handle=handle, key=key))
        for url in public_urls()
    ]


def test_sweep_finds_the_public_urls() -> None:
    names = {url.name for url in public_urls()}
    assert {"helpcenter:home", "helpcenter:article", "helpcenter:search", "helpcenter:sitemap"} <= names


def test_every_public_url_answers_for_the_site_and_404s_across_tenants(
    client: Client, hc_kb: KnowledgeBase, hc_kb_b: KnowledgeBase, tenant_a: Tenant, charlie: Any
) -> None:
    ok = _paths("tenant-a", "help", "returns-policy")
    assert all(client.get(path).status_code in (200, 302) for path in ok)
    client.force_login(charlie)  # a member of B is nobody special here
    unpublished = [
        path
        for key in ("secret-draft", "secret-review", "secret-rejected")
        for path in _paths("tenant-a", "help", key)
        if "/articles/" in path
    ]
    crossed = [
        *_paths("tenant-a", str(hc_kb_b.pk), "returns-policy"),  # B's base under A's name
        *_paths("tenant-b", str(hc_kb.pk), "returns-policy"),  # A's base id under B's name
        *_paths("nobody", "help", "returns-policy"),
        *unpublished,
    ]
    assert len(unpublished) == 3
    for path in crossed:
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"secret" not in response.content.lower()
    with tenant_context(tenant_a):
        kb_update(kb=hc_kb, helpcenter_enabled=False)
    for path in ok:
        assert client.get(path).status_code == 404, path
