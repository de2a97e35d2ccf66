"""Tenant services: creation writes both silos; the home region is fixed once data exists."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connections

from apps.core.context import tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.tenants.models import Region, RegionTenant, Tenant
from apps.tenants.services import region_sync, tenant_create, tenant_update

pytestmark = pytest.mark.django_db


def test_region_sync_matches_settings() -> None:
    codes = [r.code for r in region_sync()]
    assert codes == ["eu", "us"]
    assert set(Region.objects.filter(is_active=True).values_list("code", flat=True)) == {"eu", "us"}


def test_tenant_create_sets_locales_and_anchor(region_eu: Region) -> None:
    tenant = tenant_create(
        slug="acme",
        name="Acme",
        home_region=region_eu,
        default_locale="de",
        enabled_locales=["en", "de", "fr-CA"],
    )
    assert tenant.enabled_locales == ["de", "en", "fr-CA"]
    with tenant_context(tenant):
        assert RegionTenant.objects.get().slug == "acme"


@pytest.mark.parametrize(
    ("field", "value"),
    [("slug", "Bad Slug"), ("slug", "-edge"), ("default_locale", "english"), ("name", "")],
)
def test_tenant_create_rejects_bad_input_and_leaves_nothing(
    region_eu: Region, field: str, value: str
) -> None:
    kwargs: dict[str, Any] = {
        "slug": "ok",
        "name": "OK",
        "home_region": region_eu,
        "default_locale": "en",
        field: value,
    }
    with pytest.raises(ValidationError) as info:
        tenant_create(**kwargs)
    assert field in info.value.message_dict
    assert not Tenant.objects.exists()


def test_duplicate_slug_is_a_field_error(tenant_a: Tenant, region_us: Region) -> None:
    with pytest.raises((ValidationFailed, ValidationError)) as info:
        tenant_create(slug="tenant-a", name="Again", home_region=region_us)
    assert "slug" in str(info.value)
    assert Tenant.objects.filter(slug="tenant-a").count() == 1


def test_home_region_is_fixed_once_the_tenant_has_data(tenant_a: Tenant, region_us: Region) -> None:
    """Creating a tenant writes its audit chain in its region, so moving it is a migration, not an edit."""
    with pytest.raises(Conflict, match="data migration"):
        tenant_update(tenant=tenant_a, home_region=region_us)
    tenant_a.refresh_from_db()
    assert tenant_a.region_code == "eu"
    with connections["region_us"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tenants_regiontenant WHERE tenant_id = %s", [tenant_a.id])
        assert cursor.fetchone() == (0,)
