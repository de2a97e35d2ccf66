"""The demo's single sign-on (`seed_demo`, apps/console/demo.py): `globex` signs in through the demo OpenID
provider that `simulators up` starts (connectors/oidc/simulator.py), with the users of the README's table.

Idempotent; the simulator picks a new port at each start, so every run points the provider at the current
one and registers the hub's callback URL there again. Known secrets are fine: seed_demo refuses production.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.core.public import public_base_url
from apps.tenants.models import Role, Tenant
from connectors.simulation import SimulatorAdminError, admin_post

logger = logging.getLogger(__name__)

DEMO_SSO_TENANT = "globex"
DEMO_SSO_DOMAIN = "globex.example"
DEMO_PROVIDER_NAME = "Demo IdP (OpenID Connect)"
#: (IdP group, role, locales) — the README's table follows from these and the IdP's demo users.
DEMO_ROLE_MAPPINGS: tuple[tuple[str, Role, list[str]], ...] = (
    ("hub-admins", Role.ADMIN, []),
    ("hub-editors", Role.LOCALIZATION_EDITOR, ["de"]),
    ("hub-viewers", Role.VIEWER, []),
)


def _callback_urls() -> list[str]:
    """The hub's callback as a browser reaches the demo: at localhost and at 127.0.0.1 (same port)."""
    url = public_base_url() + reverse("accounts:oidc-callback")
    twins = {url, url.replace("//localhost:", "//127.0.0.1:"), url.replace("//127.0.0.1:", "//localhost:")}
    return sorted(twins)


def seed_demo_sso(tenants: Mapping[str, Tenant], *, simulators: Mapping[str, Any]) -> dict[str, Any] | None:
    """Point `globex` at the running demo OpenID provider; None (logged) when it or the tenant is missing."""
    tenant, idp = tenants.get(DEMO_SSO_TENANT), simulators.get("oidc")
    if tenant is None or idp is None:
        logger.warning(
            "Demo OpenID provider or tenant %s missing: demo single sign-on skipped.", DEMO_SSO_TENANT
        )
        return None
    try:
        admin_post(
            idp,
            "clients",
            {
                "client_id": idp["client_id"],
                "client_secret": idp["client_secret"],
                "redirect_uris": _callback_urls(),
            },
        )
    except SimulatorAdminError as exc:
        logger.warning("Demo OpenID provider refused the client registration (%s): demo SSO skipped.", exc)
        return None
    provider = IdentityProvider.objects.filter(
        tenant=tenant, name=DEMO_PROVIDER_NAME
    ).first() or IdentityProvider(tenant=tenant, name=DEMO_PROVIDER_NAME)
    provider.protocol = IdentityProvider.Protocol.OIDC
    provider.is_active = True
    provider.oidc_discovery_url = idp["discovery_url"]
    provider.oidc_client_id = idp["client_id"]
    provider.oidc_client_secret = str(idp["client_secret"]).encode()
    provider.oidc_scopes = "openid email profile groups"
    provider.groups_claim = "groups"
    provider.accept_idp_mfa = True
    provider.save()
    SsoDomain.objects.update_or_create(
        tenant=tenant,
        domain=DEMO_SSO_DOMAIN,
        defaults={
            "identity_provider": provider,
            "verified_at": timezone.now(),
            "verification_token": secrets.token_hex(16),
        },
    )
    for position, (group, role, locales) in enumerate(DEMO_ROLE_MAPPINGS):
        RoleMapping.objects.update_or_create(
            tenant=tenant, group=group, defaults={"role": role, "locales": locales, "position": position}
        )
    return {
        "tenant": tenant.slug,
        "provider": provider.name,
        "sign_in_url": public_base_url() + reverse("accounts:sso-tenant", args=[tenant.slug]),
        "idp_users": idp.get("users", []),
    }
