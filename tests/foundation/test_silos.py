"""The silo router: region data lives only in the tenant's home region database, scoped per tenant."""

from __future__ import annotations

import pytest
from django.db import connections

from apps.core.context import tenant_context
from apps.core.errors import NoTenantContext
from apps.tenants.models import Region, RegionTenant, Tenant
from apps.tenants.routers import SiloRouter
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def _raw_slugs(alias: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT slug FROM tenants_regiontenant ORDER BY slug")
        return [row[0] for row in cursor.fetchall()]


def test_eu_tenant_data_is_physically_in_eu_database_only(tenant_a: Tenant, tenant_b: Tenant) -> None:
    assert tenant_a.region_code == "eu"
    assert tenant_b.region_code == "us"
    assert _raw_slugs("region_eu") == ["tenant-a"]
    assert _raw_slugs("region_us") == ["tenant-b"]
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT to_regclass('tenants_regiontenant')")
        assert cursor.fetchone() == (None,), "region tables must not exist in the control database"


def test_region_query_without_tenant_context_is_refused(tenant_a: Tenant) -> None:
    with pytest.raises(NoTenantContext, match="tenant_context"):
        list(RegionTenant.objects.all())
    with pytest.raises(NoTenantContext):
        RegionTenant(slug="orphan").save()


def test_tenants_sharing_a_region_see_only_their_rows(tenant_a: Tenant, region_eu: Region) -> None:
    neighbour = TenantFactory.create(slug="neighbour", home_region=region_eu)
    assert sorted(_raw_slugs("region_eu")) == ["neighbour", "tenant-a"]
    with tenant_context(tenant_a):
        assert list(RegionTenant.objects.values_list("slug", flat=True)) == ["tenant-a"]
    with tenant_context(neighbour):
        assert list(RegionTenant.objects.values_list("slug", flat=True)) == ["neighbour"]
        assert RegionTenant.all_tenants.count() == 2


def test_saving_another_tenants_row_in_my_context_is_refused(tenant_a: Tenant, tenant_b: Tenant) -> None:
    with tenant_context(tenant_b):
        row = RegionTenant.objects.get()
    with tenant_context(tenant_a), pytest.raises(NoTenantContext, match="Refusing"):
        row.save()


def test_control_models_route_to_default_and_region_models_to_the_tenant_region(tenant_b: Tenant) -> None:
    router = SiloRouter()
    assert router.db_for_read(Tenant) == "default"
    with tenant_context(tenant_b):
        assert router.db_for_write(RegionTenant) == "region_us"
    assert router.allow_migrate("region_eu", "tenants", "regiontenant") is True
    assert router.allow_migrate("default", "tenants", "regiontenant") is False
    assert router.allow_migrate("region_eu", "tenants", "tenant") is False
    assert router.allow_migrate("region_us", "core", silo="all") is True


def test_every_region_database_has_pgvector() -> None:
    for alias in ("default", "region_eu", "region_us"):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
            assert row is not None, alias
            assert row[0].startswith("0.8"), alias
