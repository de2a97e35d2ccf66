"""The sign-in page: home-realm discovery (e-mail first), the password step, "sign in with your
organisation", enforcement with break-glass, and the password pages of accounts made by single sign-on."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from apps.accounts.models import IdentityProvider, SsoDomain
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Membership, Tenant
from tests.fixtures.auth import PASSWORD, enroll, next_code

pytestmark = pytest.mark.django_db
LOGIN = reverse("accounts:login")


def identify(client: Client, who: str, **extra: str) -> Any:
    return client.post(LOGIN, {"step": "identify", "username": who, **extra})


def start_url(provider: IdentityProvider, next_url: str = "/") -> str:
    path = reverse("accounts:sso-start", kwargs={"provider_id": provider.pk})
    return path + "?" + urlencode({"next": next_url})


def _form(response: Any) -> str:
    html = response.content.decode()
    chunk = html[html.index("<form") : html.index("</form>")]
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", chunk)


# --- home-realm discovery ----------------------------------------------------------------------------------
def test_first_step_asks_who_without_a_password_field(client: Client) -> None:
    body = client.get(LOGIN).content.decode()
    assert 'name="username"' in body and 'name="password"' not in body
    assert reverse("accounts:sso-organisation") in body


def test_an_address_in_a_verified_domain_goes_to_its_idp_keeping_next(client: Client, idp_a: Any) -> None:
    response = identify(client, "Ann@ACME.example", next="/t/tenant-a/")
    assert response.status_code == 302
    assert response["Location"] == start_url(idp_a, "/t/tenant-a/")


def test_an_internationalised_domain_is_found_in_its_ascii_form(client: Client, idp_a: Any) -> None:
    """Verified domains are stored as IDNA (punycode); an address typed in Unicode still finds its IdP."""
    SsoDomain.objects.filter(identity_provider=idp_a).update(domain="xn--bcher-kva.example")
    assert identify(client, "anna@BÜCHER.example")["Location"] == start_url(idp_a)
    assert identify(client, "anna@xn--bcher-kva.example")["Location"] == start_url(idp_a)


def test_an_unknown_address_of_the_verified_domain_also_goes_to_the_idp(client: Client, idp_a: Any) -> None:
    """Discovery looks at the domain only: no account needed (JIT), none revealed."""
    assert identify(client, "nobody-yet@acme.example")["Location"] == start_url(idp_a)


def test_an_evil_next_is_dropped_on_the_way_to_the_idp(client: Client, idp_a: Any) -> None:
    response = identify(client, "ann@acme.example", next="https://evil.example.com/")
    assert response["Location"] == start_url(idp_a, reverse("console:home"))


@pytest.mark.parametrize("state", ["unverified", "inactive_provider", "inactive_tenant"])
def test_no_discovery_for_unverified_domains_or_inactive_providers(
    client: Client, idp_a: IdentityProvider, tenant_a: Tenant, state: str
) -> None:
    if state == "unverified":
        SsoDomain.objects.update(verified_at=None)
    elif state == "inactive_provider":
        IdentityProvider.objects.update(is_active=False)
    else:
        Tenant.objects.filter(pk=tenant_a.pk).update(is_active=False)
    response = identify(client, "ann@acme.example")
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


def test_other_addresses_and_usernames_get_the_password_step_prefilled(client: Client, idp_a: Any) -> None:
    response = identify(client, "bob")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="password"' in body and 'value="bob"' in body
    assert 'name="step"' not in _form(response)  # the second step posts a full sign-in


def test_the_password_step_does_not_tell_whether_the_account_exists(client: Client, bob: Any) -> None:
    known, unknown = identify(client, "bob"), identify(client, "nobody-here")
    assert known.status_code == unknown.status_code == 200
    assert _form(known).replace('value="bob"', "X") == _form(unknown).replace('value="nobody-here"', "X")


def test_the_password_step_signs_in(client: Client, bob: Any) -> None:
    assert identify(client, "bob").status_code == 200
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(bob.pk)


@pytest.mark.parametrize("data", [{}, {"username": ""}, {"username": "x" * 300}])
def test_malformed_first_step_is_a_400_not_a_500(client: Client, data: dict[str, Any]) -> None:
    response = client.post(LOGIN, {"step": "identify", **data})
    assert response.status_code == 400
    assert 'name="password"' not in response.content.decode()


def test_the_first_step_counts_no_failed_attempts(client: Client, bob: Any, settings: Any) -> None:
    for _ in range(settings.LOGIN_LOCKOUT_ACCOUNT_LIMIT + 2):
        identify(client, "bob")
    assert client.post(LOGIN, {"username": "bob", "password": PASSWORD}).status_code == 302


# --- sign in with your organisation ------------------------------------------------------------------------
def test_organisation_form_sends_to_the_tenant_sign_in(client: Client) -> None:
    page = client.get(reverse("accounts:sso-organisation") + "?next=/t/tenant-a/")
    assert page.status_code == 200 and 'name="organisation"' in page.content.decode()
    response = client.get(reverse("accounts:sso-organisation"), {"organisation": "tenant-a", "next": "/x/"})
    assert response.status_code == 302
    assert response["Location"] == (
        reverse("accounts:sso-tenant", kwargs={"organisation": "tenant-a"}) + "?next=%2Fx%2F"
    )


@pytest.mark.parametrize("bad", ["", "../admin", "a b", "x" * 51, "<script>"])
def test_organisation_form_refuses_what_is_not_a_slug(client: Client, bad: str) -> None:
    response = client.get(reverse("accounts:sso-organisation"), {"organisation": bad})
    assert response.status_code == 400


def test_tenant_sign_in_without_a_provider_is_a_clear_page(client: Client, tenant_a: Tenant) -> None:
    for slug in ("tenant-a", "no-such-tenant"):  # the same answer whether or not the tenant exists
        response = client.get(reverse("accounts:sso-tenant", kwargs={"organisation": slug}))
        assert response.status_code == 404
        assert b'data-testid="sso-error"' in response.content


# --- enforcement and break-glass ---------------------------------------------------------------------------
@pytest.fixture
def enforced(tenant_a: Tenant, idp_a: IdentityProvider) -> Tenant:
    Tenant.objects.filter(pk=tenant_a.pk).update(sso_enforced=True)
    tenant_a.refresh_from_db()
    return tenant_a


def test_password_of_an_enforcing_tenants_member_is_refused_and_sent_to_sso(
    client: Client, bob: Any, enforced: Tenant
) -> None:
    response = client.post(LOGIN + "?next=/t/tenant-a/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == (
        reverse("accounts:sso-tenant", kwargs={"organisation": "tenant-a"}) + "?next=%2Ft%2Ftenant-a%2F"
    )
    assert "_auth_user_id" not in client.session
    with tenant_context(enforced):
        event = AuditEvent.objects.filter(action="security.login").latest("seq")
    assert event.outcome == "denied" and event.changes["reason"] == "sso_required"


def test_a_wrong_password_for_an_enforcing_tenants_member_is_just_invalid(
    client: Client, bob: Any, enforced: Tenant
) -> None:
    """Enforcement shows only after the right password: it tells nothing to someone guessing."""
    response = client.post(LOGIN, {"username": "bob", "password": "wrong-password"})
    assert response.status_code == 400


def test_a_member_of_another_tenant_without_enforcement_keeps_the_password(
    client: Client, bob: Any, enforced: Tenant, tenant_b: Tenant
) -> None:
    Membership.objects.create(tenant=tenant_b, user=bob, role="viewer")
    response = client.post(LOGIN, {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(bob.pk)


def test_break_glass_admin_signs_in_with_password_and_mandatory_totp(
    client: Client, alice: Any, enforced: Tenant, no_otp_throttle: None
) -> None:
    Membership.objects.filter(user=alice, tenant=enforced).update(is_break_glass=True)
    device = enroll(alice)
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:otp-verify"))
    # half signed in: the tenant is out of reach until the code
    assert client.get("/t/tenant-a/")["Location"].startswith(reverse("accounts:otp-verify"))
    client.post(reverse("accounts:otp-verify"), {"token": next_code(device)})
    assert client.get("/t/tenant-a/").status_code == 200


def test_break_glass_admin_without_a_device_must_enrol_first(
    client: Client, alice: Any, enforced: Tenant
) -> None:
    Membership.objects.filter(user=alice, tenant=enforced).update(is_break_glass=True, role="viewer")
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 302
    response = client.get("/t/tenant-a/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:twofactor-enroll"))


# --- password pages of accounts made by single sign-on -----------------------------------------------------
def _sso_only(user: Any) -> Any:
    user.set_unusable_password()
    user.save()
    return user


def test_password_change_tells_an_sso_only_user_where_to_go(client: Client, bob: Any) -> None:
    client.force_login(_sso_only(bob))
    for response in (
        client.get(reverse("accounts:password-change")),
        client.post(reverse("accounts:password-change"), {"new_password1": "x", "new_password2": "x"}),
    ):
        assert response.status_code == 200
        assert b'data-testid="sso-only"' in response.content
        assert b"single sign-on" in response.content
    bob.refresh_from_db()
    assert not bob.has_usable_password()


def test_password_change_still_works_for_local_accounts(client: Client, bob: Any) -> None:
    client.force_login(bob)
    response = client.get(reverse("accounts:password-change"))
    assert response.status_code == 200 and b'name="old_password"' in response.content


def test_password_reset_for_an_sso_domain_says_to_use_the_organisation(client: Client, idp_a: Any) -> None:
    response = client.post(reverse("accounts:password-reset"), {"email": "ann@acme.example"}, follow=True)
    assert response.status_code == 200
    assert "single sign-on" in response.content.decode()
    assert mail.outbox == []


def test_password_reset_answer_for_other_domains_is_unchanged(client: Client, bob: Any, idp_a: Any) -> None:
    response = client.post(reverse("accounts:password-reset"), {"email": bob.email}, follow=True)
    assert "single sign-on" not in response.content.decode()
    assert len(mail.outbox) == 1


def test_sso_only_user_gets_no_reset_mail(client: Client, bob: Any) -> None:
    _sso_only(bob)
    client.post(reverse("accounts:password-reset"), {"email": bob.email})
    assert mail.outbox == []


# --- the password step accepts the e-mail address typed in the first step -----------------------------------
def test_the_password_step_accepts_the_accounts_email(client: Client, bob: Any) -> None:
    assert identify(client, bob.email.upper()).status_code == 200
    response = client.post(LOGIN, {"username": bob.email.upper(), "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(bob.pk)


def test_failures_by_email_and_by_username_count_against_one_account(
    client: Client, bob: Any, settings: Any
) -> None:
    for attempt in range(settings.LOGIN_LOCKOUT_ACCOUNT_LIMIT):
        name = bob.email if attempt % 2 else "bob"
        client.post(LOGIN, {"username": name, "password": "wrong-password"})
    assert client.post(LOGIN, {"username": "bob", "password": PASSWORD}).status_code == 429
