"""Single sign-on in a real browser: a member of tenant A signs in through the OpenID provider's login form
and lands in the console with the role their IdP group maps to; a forged or expired token ends on the clear
failure page. `sign_in_with_sso` (helpers) is the step later scenarios (SCIM deactivation) build on."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.accounts.models import IdentityProvider
from apps.tenants.models import Membership, Role, Tenant
from connectors.oidc.simulator import DEMO_PASSWORD, OidcSimulator
from tests.browser.helpers import sign_in_with_sso
from tests.fixtures.oidc import idp_user, oidc_provider_create

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def sso_tenant_a(live_server: LiveServer, tenant_a: Tenant, oidc_idp: OidcSimulator) -> IdentityProvider:
    """Tenant A signs in through the loopback OpenID provider, which sends browsers back to the live
    server."""
    provider = oidc_provider_create(
        tenant=tenant_a,
        idp=oidc_idp,
        domain="a.example",
        redirect_uri=f"{live_server.url}/accounts/sso/oidc/callback/",
        accept_idp_mfa=True,
    )
    idp_user(oidc_idp, "ada", domain="a.example", groups=["hub-admins"], amr=["pwd", "mfa"])
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    return provider


@pytest.mark.parametrize(("username", "role"), [("ada", "Admin"), ("vic", "Viewer")])
def test_a_member_signs_in_through_the_idp_and_lands_with_the_mapped_role(
    live_server: LiveServer,
    page: Page,
    tenant_a: Tenant,
    sso_tenant_a: IdentityProvider,
    username: str,
    role: str,
) -> None:
    sign_in_with_sso(page, live_server.url, tenant_a.slug, username, DEMO_PASSWORD)

    expect(page).to_have_url(f"{live_server.url}/t/{tenant_a.slug}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(tenant_a.name)
    expect(page.locator("dt:has-text('Your role') + dd")).to_have_text(role)
    membership = Membership.objects.get(tenant=tenant_a, user__email=f"{username}@a.example")
    assert membership.role == Role(role.lower())


@pytest.mark.parametrize("fault", ["forged", "expired"])
def test_a_forged_or_expired_token_shows_the_clear_page(
    live_server: LiveServer,
    page: Page,
    tenant_a: Tenant,
    oidc_idp: OidcSimulator,
    sso_tenant_a: IdentityProvider,
    fault: str,
) -> None:
    oidc_idp.spoil_tokens(fault)

    sign_in_with_sso(page, live_server.url, tenant_a.slug, "ada", DEMO_PASSWORD)

    expect(page).to_have_url(re.compile(r"/accounts/sso/oidc/callback/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Single sign-on failed")
    expect(page.get_by_test_id("sso-error")).to_contain_text("could not be verified")
    reference = "bad_signature" if fault == "forged" else "expired"
    expect(page.get_by_text(f"Reference for your administrator: {reference}")).to_be_visible()
    response = page.goto(f"{live_server.url}/t/{tenant_a.slug}/")
    assert response is not None and "/accounts/login/" in page.url  # nobody is signed in


def test_a_wrong_password_at_the_idp_stays_at_the_idp(
    live_server: LiveServer, page: Page, tenant_a: Tenant, sso_tenant_a: IdentityProvider, **_: Any
) -> None:
    sign_in_with_sso(page, live_server.url, tenant_a.slug, "ada", "not-the-password")

    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    assert not Membership.objects.filter(tenant=tenant_a, user__email="ada@a.example").exists()
