"""The sign-in page in a real browser with JavaScript switched off (it must not need it): e-mail first, a
verified SSO domain goes to its IdP, anything else gets the password step."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, Route, expect
from pytest_django.live_server_helper import LiveServer

from apps.accounts.models import IdentityProvider, SsoDomain
from apps.tenants.models import Tenant
from tests.browser.helpers import TIMEOUT_MS
from tests.fixtures.auth import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_js_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", timezone_id="UTC", java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_a_username_gets_the_password_step_and_signs_in(
    live_server: LiveServer, no_js_page: Page, bob: Any
) -> None:
    page = no_js_page
    page.goto(f"{live_server.url}/accounts/login/?next=/accounts/profile/")
    expect(page.get_by_label("Password")).to_have_count(0)
    page.get_by_label("E-mail or username").fill("bob")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_label("E-mail or username")).to_have_value("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/accounts/profile/")


def test_an_address_of_a_verified_domain_goes_to_its_idp(
    live_server: LiveServer, no_js_page: Page, tenant_a: Tenant
) -> None:
    provider = IdentityProvider.objects.create(tenant=tenant_a, name="Acme IdP", protocol="oidc")
    SsoDomain.objects.create(
        tenant=tenant_a,
        identity_provider=provider,
        domain="acme.example",
        verification_token="t",
        verified_at=timezone.now(),
    )
    answers: list[tuple[int, str]] = []

    def stop_at_the_idp(route: Route) -> None:
        """The real answer to the form's POST, not followed: the IdP's side is tested with real IdPs."""
        if route.request.method != "POST":
            route.continue_()
            return
        response = route.fetch(max_redirects=0)
        answers.append((response.status, response.headers.get("location", "")))
        route.fulfill(status=200, content_type="text/plain", body="on the way to the identity provider")

    page = no_js_page
    page.route(re.compile(r"/accounts/login/"), stop_at_the_idp)
    page.goto(f"{live_server.url}/accounts/login/?next=/t/tenant-a/")
    page.get_by_label("E-mail or username").fill("ann@acme.example")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("on the way to the identity provider")).to_be_visible()
    assert answers == [(302, f"/accounts/sso/{provider.pk}/start/?next=%2Ft%2Ftenant-a%2F")]
