"""SAML sign-in in a real browser: Chromium, the hub's live server and the pysaml2 IdP on another site
(localhost vs 127.0.0.1), so the IdP's POST to our ACS is cross-site and the Lax session cookie stays home.
The pending-request cookie (SameSite=None; Secure, accepted on http://localhost) must still arrive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page
from pytest_django.live_server_helper import LiveServer

from apps.tenants.models import Tenant
from connectors.saml.simulator import IdpUser, SamlIdpSimulator
from tests.accounts.sso.saml_helpers import saml_provider
from tests.fixtures.simulators import StartSimulator

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _sign_in_at_idp(page: Page, email: str) -> None:
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", IdpUser.password)
    page.click("button[type=submit]")


def test_a_user_signs_in_through_the_saml_idp_and_lands_in_the_console(
    live_server: LiveServer,
    new_page: Callable[[], Page],
    simulator: StartSimulator,
    tenant_a: Tenant,
    settings: Any,
) -> None:
    settings.HUB_CHANNELS_PUBLIC_URL = live_server.url
    idp = simulator(SamlIdpSimulator)
    idp.user_add(IdpUser(email="grace@acme.example", groups=["hub-viewers"]))
    provider = saml_provider(idp, tenant=tenant_a)
    page = new_page()

    page.goto(f"{live_server.url}/accounts/sso/{provider.pk}/start/")
    assert page.url.startswith(idp.sso_url)
    _sign_in_at_idp(page, "grace@acme.example")
    page.wait_for_url(f"{live_server.url}/t/{tenant_a.slug}/**")

    assert page.url.startswith(f"{live_server.url}/t/{tenant_a.slug}/")


def test_a_forged_assertion_shows_the_clear_refusal_page(
    live_server: LiveServer,
    new_page: Callable[[], Page],
    simulator: StartSimulator,
    tenant_a: Tenant,
    settings: Any,
) -> None:
    settings.HUB_CHANNELS_PUBLIC_URL = live_server.url
    idp = simulator(SamlIdpSimulator)
    provider = saml_provider(idp, tenant=tenant_a)
    idp.arm("foreign_key")
    page = new_page()

    page.goto(f"{live_server.url}/accounts/sso/{provider.pk}/start/")
    _sign_in_at_idp(page, "ada@acme.example")
    page.wait_for_url(f"{live_server.url}/accounts/sso/{provider.pk}/saml/acs/")

    assert "could not be accepted" in page.content()
    assert "saml_bad_signature" in page.content()
