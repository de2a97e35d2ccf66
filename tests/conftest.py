"""Shared fixtures. Tests run on the real embedded PostgreSQL and Redis that `make test` starts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache

from apps.core.context import tenant_context
from apps.tenants.models import Membership, Region, Role, Tenant
from apps.tenants.services import membership_add, region_sync
from tests.factories import TenantFactory, UserFactory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Let every database test use every silo (pytest-django otherwise allows only `default`)."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and "databases" not in marker.kwargs:
            item.add_marker(
                pytest.mark.django_db(*marker.args, **marker.kwargs, databases="__all__"), append=False
            )


@pytest.fixture(scope="session", autouse=True)
def _metrics_dir() -> Iterator[None]:
    """Start each run with an empty metrics directory (hub/settings/test.py) and remove it afterwards."""
    path = Path(settings.HUB_METRICS_DIR)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    yield
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Drop this run's cache keys only (a FLUSHDB would also wipe other runs and the Celery broker)."""
    yield
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    keys = list(client.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def regions(db: None) -> dict[str, Region]:
    """Region rows (migrate creates them; transactional tests flush them, so make sure)."""
    return {region.code: region for region in region_sync()}


@pytest.fixture
def region_eu(regions: dict[str, Region]) -> Region:
    return regions["eu"]


@pytest.fixture
def region_us(regions: dict[str, Region]) -> Region:
    return regions["us"]


@pytest.fixture
def tenant_a(region_eu: Region) -> Tenant:
    """alice's tenant (EU)."""
    return TenantFactory.create(slug="tenant-a", name="Tenant A", home_region=region_eu)


@pytest.fixture
def tenant_b(region_us: Region) -> Tenant:
    """charlie's tenant (US)."""
    return TenantFactory.create(slug="tenant-b", name="Tenant B", home_region=region_us)


@pytest.fixture
def in_tenant_a(tenant_a: Tenant) -> Iterator[Tenant]:
    with tenant_context(tenant_a):
        yield tenant_a


@pytest.fixture
def alice(tenant_a: Tenant) -> Any:
    """Admin of tenant A."""
    user = UserFactory.create(username="alice")
    membership_add(tenant=tenant_a, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def bob(tenant_a: Tenant, alice: Any) -> Any:
    """Viewer of tenant A."""
    user = UserFactory.create(username="bob")
    membership_add(tenant=tenant_a, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def charlie(tenant_b: Tenant) -> Any:
    """Viewer of tenant B: must have no access to anything of tenant A."""
    user = UserFactory.create(username="charlie")
    membership_add(tenant=tenant_b, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def operator(db: None) -> Any:
    return UserFactory.create(username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def bob_membership(bob: Any, tenant_a: Tenant) -> Membership:
    return Membership.objects.get(user=bob, tenant=tenant_a)
