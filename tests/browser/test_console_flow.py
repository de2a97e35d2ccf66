"""The console in a real browser: what an operator, an invitee and an outsider see.

One long flow follows an operator from the first sign-in (forced 2FA enrollment) through creating a tenant,
inviting and promoting a member, to the console in German. Two short tests check the sign-in lockout
message and that a member of another tenant gets the 404 page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import translation
from django.utils.translation import gettext
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from apps.accounts.views import _lockout_message
from apps.tenants.models import Membership, Region, Role, Tenant
from tests.browser.helpers import sign_in
from tests.factories import UserFactory
from tests.fixtures.auth import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT = "/tmp/hub-console-de.png"  # noqa: S108 - a fixed path for a person to look at; never read back
INVITE_LINK = re.compile(r"https?://\S+/accounts/invitations/\S+/")


def test_operator_enrolls_creates_tenant_invites_promotes_and_reads_german(
    live_server: LiveServer, new_page: Callable[[], Page], regions: dict[str, Region]
) -> None:
    base = live_server.url
    UserFactory.create(username="olga", email="olga@example.com", password=PASSWORD, is_staff=True)
    operator_page = new_page()

    # Sign in: an operator without a device is sent to enrollment before anything else.
    sign_in(operator_page, base, "olga", PASSWORD)
    expect(operator_page).to_have_url(re.compile(r"/accounts/two-factor/enroll/"))
    expect(operator_page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    expect(operator_page.locator(".qr svg")).to_be_visible()
    operator_page.goto(f"{base}/operator/tenants/")  # anything else bounces back to enrollment
    expect(operator_page).to_have_url(re.compile(r"/accounts/two-factor/enroll/"))

    # The authenticator app: the key printed on the page, in groups of four.
    secret = operator_page.locator("#totp-secret").inner_text().replace(" ", "")
    operator_page.get_by_label("Code from your app").fill(pyotp.TOTP(secret).now())
    operator_page.get_by_role("button", name="Confirm").click()

    # The backup codes exist in the clear only in the answer to that POST (no URL to come back to).
    expect(operator_page).to_have_url(re.compile(r"/accounts/two-factor/enroll/"))
    expect(operator_page.get_by_text("Two-factor authentication is on.")).to_be_visible()
    expect(operator_page.locator(".backup-codes li")).not_to_have_count(0)
    operator_page.get_by_role("link", name="I have stored them").click()

    # Create a tenant in the operator screen.
    operator_page.get_by_role("link", name="All tenants").click()
    expect(operator_page.get_by_role("heading", name="All tenants")).to_be_visible()
    operator_page.get_by_role("link", name="Create tenant").click()
    operator_page.get_by_label("Name").fill("Initech")
    operator_page.get_by_label("Slug").fill("initech")
    operator_page.get_by_label("Home region").select_option(str(regions["us"].pk))
    operator_page.get_by_label("Default locale").fill("en")
    operator_page.get_by_label("Enabled locales").fill("en, de, fr-CA")
    operator_page.get_by_role("button", name="Create tenant").click()

    expect(operator_page).to_have_url(f"{base}/t/initech/")
    expect(operator_page.get_by_role("heading", level=1)).to_have_text("Initech")
    expect(operator_page.get_by_text("Tenant “Initech” created.")).to_be_visible()
    expect(operator_page.locator("dd", has_text=regions["us"].name)).to_be_visible()
    expect(operator_page.locator("dd", has_text="en, de, fr-CA")).to_be_visible()
    expect(operator_page.locator("#tenant-switcher")).to_have_value("initech")

    # Invite a member; the link travels by e-mail.
    operator_page.get_by_role("link", name="Tenants & members").click()
    operator_page.get_by_role("link", name="Invite member").click()
    operator_page.get_by_label("E-mail address").fill("ivan@example.com")
    operator_page.get_by_label("Role").select_option(Role.VIEWER)
    operator_page.get_by_role("button", name="Send invitation").click()
    expect(operator_page.get_by_text("Invitation sent to ivan@example.com.")).to_be_visible()
    expect(operator_page.get_by_role("heading", name="Open invitations")).to_be_visible()

    assert [message.to for message in mail.outbox] == [["ivan@example.com"]]
    body = str(mail.outbox[0].body)
    found = INVITE_LINK.search(body)
    assert found, body
    link = found.group(0)
    assert link.startswith(base)

    # The invitee, in a browser of their own, signs up and lands in the tenant.
    invitee_page = new_page()
    invitee_page.goto(link)
    expect(invitee_page.get_by_role("heading", name="Create your account")).to_be_visible()
    expect(invitee_page.get_by_text("You are invited to join Initech as Viewer.")).to_be_visible()
    expect(invitee_page.locator("#invited-email")).to_have_value("ivan@example.com")
    invitee_page.get_by_label("Username").fill("ivan")
    invitee_page.get_by_label(re.compile(r"^Password:?$")).fill("plaid-otter-lantern-42")
    invitee_page.get_by_label("Password again").fill("plaid-otter-lantern-42")
    invitee_page.get_by_role("button", name="Create account and join").click()

    expect(invitee_page).to_have_url(f"{base}/t/initech/")
    expect(invitee_page.get_by_text("Welcome to Initech.")).to_be_visible()
    expect(invitee_page.get_by_role("heading", level=1)).to_have_text("Initech")
    expect(invitee_page.locator("dd", has_text="Viewer")).to_be_visible()

    # The operator promotes the new member on the member page and sees the role in the list.
    operator_page.get_by_role("link", name="Tenants & members").click()
    ivan_row = operator_page.get_by_role("row", name=re.compile(r"\bivan\b"))
    expect(ivan_row).to_contain_text("Viewer")
    expect(operator_page.get_by_role("heading", name="Open invitations")).to_have_count(0)
    ivan_row.get_by_role("link", name="ivan").click()
    expect(operator_page.get_by_role("heading", level=1)).to_have_text("ivan")
    operator_page.get_by_label("Role").select_option(Role.CONNECTOR_MANAGER)
    operator_page.get_by_role("button", name="Save").click()

    expect(operator_page).to_have_url(f"{base}/t/initech/members/")
    expect(operator_page.get_by_text("Role of ivan updated.")).to_be_visible()
    expect(ivan_row.locator(".badge")).to_have_text("Connector manager")
    membership = Membership.objects.get(tenant=Tenant.objects.get(slug="initech"), user__username="ivan")
    assert membership.role == Role.CONNECTOR_MANAGER

    # German, chosen in the profile and stored on the account.
    operator_page.locator("nav.usermenu").get_by_role("link", name="olga").click()
    operator_page.get_by_label("Language").select_option("de")
    operator_page.get_by_role("button", name="Save").click()
    expect(operator_page.locator("html")).to_have_attribute("lang", "de")

    with translation.override("de"):
        nav_label = gettext("Tenants & members")
    operator_page.goto(f"{base}/t/initech/")
    expect(operator_page.locator("html")).to_have_attribute("lang", "de")
    operator_page.screenshot(path=SCREENSHOT, full_page=True)
    assert get_user_model().objects.get(username="olga").language == "de"
    assert nav_label != "Tenants & members", "the German catalog lacks “Tenants & members”"
    expect(operator_page.locator("nav.sidebar").get_by_role("link", name=nav_label)).to_be_visible()


def test_repeated_failed_sign_ins_show_the_lockout_message(
    live_server: LiveServer, page: Page, bob: Any
) -> None:
    with translation.override("en"):
        locked = _lockout_message()
        invalid = gettext("Please enter a correct username and password. Both fields may be case-sensitive.")
    for _ in range(settings.LOGIN_LOCKOUT_ACCOUNT_LIMIT - 1):
        sign_in(page, live_server.url, "bob", "not-the-password")
        expect(page.get_by_role("alert")).to_have_text(invalid)

    sign_in(page, live_server.url, "bob", "not-the-password")
    expect(page.get_by_role("alert")).to_have_text(locked)

    # Locked means locked: the right password does not get in either.
    sign_in(page, live_server.url, "bob", PASSWORD)
    expect(page.get_by_role("alert")).to_have_text(locked)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_member_of_another_tenant_sees_the_404_page(
    live_server: LiveServer, page: Page, alice: Any, tenant_a: Tenant, charlie: Any
) -> None:
    sign_in(page, live_server.url, "charlie", PASSWORD)
    expect(page).to_have_url(f"{live_server.url}/t/tenant-b/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Tenant B")

    for path in (
        "/t/tenant-a/",
        "/t/tenant-a/members/",
        f"/t/tenant-a/members/{alice.memberships.get().pk}/",
    ):
        response = page.goto(live_server.url + path)
        assert response is not None
        assert response.status == 404, path
        body = page.content()
        assert "Not Found" in body
        assert tenant_a.name not in body
        assert "alice" not in body
