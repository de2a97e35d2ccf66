"""The demo tenants and users of `seed_demo` (apps/console/demo.py). Idempotent: re-running refreshes.

Known passwords and TOTP secrets are fine here because seed_demo refuses production settings.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import transaction

from apps.tenants.models import Membership, Region, Role, Tenant
from apps.tenants.roles import ROLES_REQUIRING_2FA
from apps.tenants.services import membership_add, membership_change_role, region_sync, tenant_create

DEMO_PASSWORD = "demo-Passw0rd!2026"  # noqa: S105 - demo only, refused in production
DEMO_TENANTS: list[dict[str, Any]] = [
    {
        "slug": "acme",
        "name": "Acme GmbH",
        "region": "eu",
        "default_locale": "de",
        "enabled_locales": ["de", "en", "fr", "es", "ja"],
    },
    {
        "slug": "globex",
        "name": "Globex Corporation",
        "region": "us",
        "default_locale": "en",
        "enabled_locales": ["en", "es", "fr", "de", "ja"],
    },
]
# (username, tenant, role, language)
DEMO_MEMBERS = [
    ("alice", "acme", Role.ADMIN, "en"),
    ("connor", "acme", Role.CONNECTOR_MANAGER, "en"),
    ("cora", "acme", Role.COMPLIANCE_OFFICER, "de"),
    ("lena", "acme", Role.LOCALIZATION_EDITOR, "de"),
    ("victor", "acme", Role.VIEWER, "en"),
    ("gina", "globex", Role.ADMIN, "en"),
    ("charlie", "globex", Role.VIEWER, "en"),
]


def _demo_totp_seed(username: str) -> bytes:
    """Return a stable per-user TOTP seed: re-seeding keeps the authenticator apps working."""
    return hashlib.sha256(f"hub-demo-totp:{username}".encode()).digest()[:20]


def _ensure_totp(user: Any) -> str:
    """Give `user` a confirmed TOTP device with the demo seed (stored sealed, like every seed)."""
    # Looked up by name like the user model: the device model lives in apps.accounts, above this app.
    device_model = apps.get_model("accounts", "TOTPDevice")
    seed = _demo_totp_seed(user.username)
    device_model.objects.update_or_create(user=user, name="demo", defaults={"seed": seed, "confirmed": True})
    return base64.b32encode(seed).decode()


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


def _ensure_user(username: str, *, language: str = "en", operator: bool = False) -> Any:
    user, _ = get_user_model().objects.update_or_create(
        username=username,
        defaults={
            "email": f"{username}@example.com",
            "is_staff": operator,
            "is_superuser": operator,
            "language": language,
        },
    )
    user.set_password(DEMO_PASSWORD)
    user.save()
    return user


def seed_demo_tenants() -> dict[str, Tenant]:
    """Create the demo tenants whose region is active; return them by slug."""
    region_sync()
    active = set(Region.objects.filter(is_active=True).values_list("code", flat=True))
    return {spec["slug"]: _ensure_tenant(spec) for spec in DEMO_TENANTS if spec["region"] in active}


def seed_demo_users(tenants: dict[str, Tenant]) -> list[dict[str, Any]]:
    """Create an operator and one user per role in the demo tenants; return what a person needs to log in."""
    users: list[dict[str, Any]] = []
    with transaction.atomic():
        operator = _ensure_user("operator", operator=True)
        users.append(
            {
                "username": "operator",
                "password": DEMO_PASSWORD,
                "role": "platform_operator",
                "tenant": None,
                "totp_secret": _ensure_totp(operator),
            }
        )
        for username, slug, role, language in DEMO_MEMBERS:
            if slug not in tenants:
                continue
            user = _ensure_user(username, language=language)
            existing = Membership.objects.filter(user=user, tenant=tenants[slug]).first()
            if existing is None:
                membership_add(tenant=tenants[slug], user=user, role=role)
            elif existing.role != role:
                membership_change_role(membership=existing, role=role)
            needs_totp = role in ROLES_REQUIRING_2FA
            users.append(
                {
                    "username": username,
                    "password": DEMO_PASSWORD,
                    "role": str(role),
                    "tenant": slug,
                    "totp_secret": _ensure_totp(user) if needs_totp else None,
                }
            )
    return users
