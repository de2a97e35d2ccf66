"""Writes of regions and tenants."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.core.context import tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.tenants.models import Region, RegionTenant, Tenant
from apps.tenants.selectors import tenant_has_region_data

REGION_NAMES = {"eu": "European Union", "us": "United States", "apac": "Asia-Pacific", "uk": "United Kingdom"}


def region_sync() -> list[Region]:
    """Make the Region rows match settings.HUB_REGIONS (the database aliases are fixed at start-up)."""
    regions = []
    for code in settings.HUB_REGIONS:
        region, _ = Region.objects.get_or_create(
            code=code, defaults={"name": REGION_NAMES.get(code, code.upper())}
        )
        regions.append(region)
    Region.objects.exclude(code__in=settings.HUB_REGIONS).update(is_active=False)
    return regions


def _clean_locales(default_locale: str, enabled_locales: Iterable[str]) -> list[str]:
    """Put the default locale first and drop repeats."""
    return list(dict.fromkeys([default_locale, *enabled_locales]))


def tenant_create(
    *,
    slug: str,
    name: str,
    home_region: Region,
    default_locale: str = "en",
    enabled_locales: Iterable[str] = (),
) -> Tenant:
    """Create a tenant in the control silo and its anchor row in its home region.

    The two databases cannot share a transaction; if the region write fails the control row is removed,
    so no tenant exists without its region anchor.
    """
    if not home_region.is_active:
        raise ValidationFailed("Region is not active.", {"home_region": ["This region is not active."]})
    tenant = Tenant(
        slug=slug,
        name=name,
        home_region=home_region,
        default_locale=default_locale,
        enabled_locales=_clean_locales(default_locale, enabled_locales),
    )
    tenant.full_clean()
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError:
        raise ValidationFailed("Slug taken.", {"slug": ["A tenant with this slug already exists."]}) from None
    try:
        with tenant_context(tenant), transaction.atomic(using=home_region.db_alias):
            RegionTenant.objects.create(slug=tenant.slug)
    except Exception:
        tenant.delete()
        raise
    return tenant


def tenant_update(
    *,
    tenant: Tenant,
    name: str | None = None,
    default_locale: str | None = None,
    enabled_locales: Iterable[str] | None = None,
    home_region: Region | None = None,
    is_active: bool | None = None,
) -> Tenant:
    """Change tenant settings; the home region only while its region holds no data (else: a migration)."""
    if home_region is not None and home_region.pk != tenant.home_region_id:
        if tenant_has_region_data(tenant=tenant):
            raise Conflict(
                "The home region cannot be changed once the tenant has data; that is a data migration."
            )
        with tenant_context(tenant):
            RegionTenant.objects.all().delete()
        tenant.home_region = home_region
        with tenant_context(tenant):
            RegionTenant.objects.create(slug=tenant.slug)
    if name is not None:
        tenant.name = name
    if default_locale is not None:
        tenant.default_locale = default_locale
    if enabled_locales is not None or default_locale is not None:
        tenant.enabled_locales = _clean_locales(
            tenant.default_locale, enabled_locales if enabled_locales is not None else tenant.enabled_locales
        )
    if is_active is not None:
        tenant.is_active = is_active
    tenant.full_clean()
    tenant.save()
    return tenant
