"""charlie (a member of tenant B) requests every tenant-A URL and must get 404: no data, no existence leak."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.tenants.models import Invitation, ManagementToken, Tenant
from tests.sweep import kwargs_for, tenant_urls

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_a_objects(tenant_a: Tenant, alice: Any, bob: Any) -> Tenant:
    Invitation.objects.create(
        tenant=tenant_a,
        email="new@example.com",
        role="viewer",
        invited_by=alice,
        expires_at=timezone.now() + timedelta(days=1),
    )
    ManagementToken.objects.create(
        tenant=tenant_a, user=alice, name="ci", prefix="sweep0001", token_hash="0" * 64
    )
    return tenant_a


def test_sweep_finds_the_tenant_urls() -> None:
    names = {url.name for url in tenant_urls()}
    assert {"console:tenant-home", "tenants:members", "tenants:member-edit", "tenants:settings"} <= names


def test_charlie_gets_404_on_every_tenant_a_url(
    client: Client, charlie: Any, tenant_a_objects: Tenant
) -> None:
    client.force_login(charlie)
    checked = 0
    for url in tenant_urls():
        path = reverse(url.name, kwargs=kwargs_for(url, tenant_a_objects))
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == 404, (
                f"{method.upper()} {path} ({url.name}) -> {response.status_code}"
            )
            assert b"tenant-a" not in response.content.lower() or b"Tenant A" not in response.content
            checked += 1
    assert checked >= 2 * 10


def test_anonymous_is_sent_to_login_not_shown_data(client: Client, tenant_a_objects: Tenant) -> None:
    for url in tenant_urls():
        path = reverse(url.name, kwargs=kwargs_for(url, tenant_a_objects))
        response = client.get(path)
        if path.startswith("/api/"):
            assert response.status_code in (401, 403), path
        else:
            assert response.status_code == 302, path
            assert response["Location"].startswith(reverse("accounts:login")), path


def test_unknown_tenant_slug_is_404_for_members_too(client: Client, bob: Any) -> None:
    client.force_login(bob)
    assert client.get("/t/does-not-exist/").status_code == 404
