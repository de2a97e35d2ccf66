"""The demo data set used by `make run` and `seed_demo`. Idempotent: re-running refreshes, never duplicates.

Known passwords are fine here because seed_demo refuses production settings.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.tenants.models import Region, Tenant
from apps.tenants.services import region_sync, tenant_create

DEMO_PASSWORD = "demo-Passw0rd!2026"  # noqa: S105 - demo only, refused in production
DEMO_TENANTS = [
    {
        "slug": "acme",
        "name": "Acme GmbH",
        "region": "eu",
        "default_locale": "de",
        "enabled_locales": ["de", "en", "fr"],
    },
    {
        "slug": "globex",
        "name": "Globex Corporation",
        "region": "us",
        "default_locale": "en",
        "enabled_locales": ["en", "es", "ja"],
    },
]


def _ensure_tenant(spec: dict[str, Any]) -> Tenant:
    existing = Tenant.objects.filter(slug=spec["slug"]).first()
    if existing is not None:
        return existing
    region = Region.objects.get(code=spec["region"])
    return tenant_create(
        slug=spec["slug"],
        name=spec["name"],
        home_region=region,
        default_locale=spec["default_locale"],
        enabled_locales=spec["enabled_locales"],
    )


def seed_demo() -> dict[str, Any]:
    """Create the demo tenants and users; return what a person needs to log in."""
    region_sync()
    tenants = [_ensure_tenant(spec) for spec in DEMO_TENANTS if spec["region"] in _region_codes()]
    with transaction.atomic():
        operator, _ = get_user_model().objects.get_or_create(
            username="operator",
            defaults={"email": "operator@example.com", "is_staff": True, "is_superuser": True},
        )
        operator.set_password(DEMO_PASSWORD)
        operator.save()
    return {
        "console_url": "/",
        "users": [
            {"username": "operator", "password": DEMO_PASSWORD, "description": "platform operator"},
        ],
        "tenants": [{"slug": t.slug, "name": t.name, "region": t.region_code} for t in tenants],
    }


def _region_codes() -> set[str]:
    return set(Region.objects.filter(is_active=True).values_list("code", flat=True))
