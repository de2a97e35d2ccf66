"""The demo's single sign-on: `seed_demo_sso` points globex at the demo OpenID provider, and the README's
users get the roles its table promises (or are refused, for a user with no mapped group)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.accounts.demo import DEMO_PROVIDER_NAME, seed_demo_sso
from apps.accounts.models import IdentityProvider
from apps.tenants.models import Membership, Region, Role
from connectors.oidc.simulator import OidcSimulator
from tests.factories import TenantFactory
from tests.fixtures.oidc import oidc_sign_in

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("username", "role", "locales"),
    [("grace", Role.ADMIN, []), ("ed", Role.LOCALIZATION_EDITOR, ["de"]), ("vera", Role.VIEWER, [])],
)
def test_the_readme_users_sign_in_to_globex_with_their_roles(
    settings: Any,
    oidc_idp: OidcSimulator,
    region_us: Region,
    username: str,
    role: Role,
    locales: list[str],
) -> None:
    settings.HUB_CHANNELS_PUBLIC_URL = "http://testserver"
    globex = TenantFactory.create(slug="globex", name="Globex", home_region=region_us)
    for _ in range(2):  # idempotent: a second `make run` refreshes, never duplicates
        seeded = seed_demo_sso({"globex": globex}, simulators={"oidc": oidc_idp.describe()})
    assert seeded is not None and seeded["sign_in_url"] == "http://testserver/accounts/sso/t/globex/"
    provider = IdentityProvider.objects.get(tenant=globex, name=DEMO_PROVIDER_NAME)

    response = oidc_sign_in(Client(), provider, username=username)

    assert response.status_code == 302
    membership = Membership.objects.get(tenant=globex, user__email=f"{username}@globex.example")
    assert (membership.role, membership.locales) == (role, locales)


def test_a_demo_user_without_a_mapped_group_is_refused(
    settings: Any, oidc_idp: OidcSimulator, region_us: Region
) -> None:
    settings.HUB_CHANNELS_PUBLIC_URL = "http://testserver"
    globex = TenantFactory.create(slug="globex", name="Globex", home_region=region_us)
    seed_demo_sso({"globex": globex}, simulators={"oidc": oidc_idp.describe()})
    provider = IdentityProvider.objects.get(tenant=globex)

    assert oidc_sign_in(Client(), provider, username="nobody").status_code == 403


def test_without_the_demo_provider_the_demo_skips_sso(region_us: Region) -> None:
    globex = TenantFactory.create(slug="globex", name="Globex", home_region=region_us)
    assert seed_demo_sso({"globex": globex}, simulators={}) is None
    assert not IdentityProvider.objects.exists()
