"""OpenID Connect sign-in end to end: the test client through the real loopback provider (authorization code
with PKCE), just-in-time accounts, roles from groups at every sign-in, the IdP's MFA, where it lands."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.accounts.models import ExternalIdentity
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Membership, MembershipSource, Role, Tenant
from apps.tenants.sso import SSO_SESSION_KEY
from connectors.oidc.simulator import OidcSimulator
from tests.fixtures.oidc import MakeProvider, idp_user, oidc_sign_in

pytestmark = pytest.mark.django_db

HOME = reverse("console:home")


def membership_of(email: str, tenant: Tenant) -> Membership | None:
    return Membership.objects.filter(user__email=email, tenant=tenant).first()


def sso_events(tenant: Tenant, outcome: str) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action="security.sso_login", outcome=outcome))


def test_first_sign_in_creates_the_user_with_the_role_of_their_group(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example", accept_idp_mfa=True)
    email = idp_user(oidc_idp, "gwen", domain="a.example", groups=["hub-admins"], amr=["pwd", "mfa"])

    response = oidc_sign_in(client, provider, username="gwen")

    assert response.status_code == 302 and response["Location"] == HOME
    user = get_user_model().objects.get(email=email)
    assert not user.has_usable_password()
    membership = membership_of(email, tenant_a)
    assert membership is not None
    assert (membership.role, membership.source) == (Role.ADMIN, MembershipSource.SSO)
    identity = ExternalIdentity.objects.get(user=user, identity_provider=provider)
    assert identity.subject == oidc_idp.users["gwen"].sub and identity.groups == ["hub-admins"]
    assert client.session[SSO_SESSION_KEY] == {"tenant": tenant_a.pk, "provider": provider.pk, "mfa": True}
    # The IdP's MFA stands in for TOTP: an admin reaches the console without being asked for a code.
    landed = client.get(HOME, follow=True)
    assert landed.status_code == 200 and landed.redirect_chain[-1][0] == f"/t/{tenant_a.slug}/"
    [event] = sso_events(tenant_a, "success")
    assert event.changes["role"] == "admin" and event.changes["idp_mfa"] is True


def test_without_idp_mfa_an_admin_is_still_asked_for_totp(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example", accept_idp_mfa=True)
    idp_user(oidc_idp, "gwen", domain="a.example", groups=["hub-admins"], amr=["pwd"])

    assert oidc_sign_in(client, provider, username="gwen")["Location"] == HOME
    assert client.session[SSO_SESSION_KEY]["mfa"] is False
    answer = client.get(f"/t/{tenant_a.slug}/")
    assert answer.status_code == 302 and "/accounts/two-factor/" in answer["Location"]


def test_mfa_reported_by_the_idp_is_ignored_unless_the_tenant_accepts_it(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")  # accept_idp_mfa off
    idp_user(oidc_idp, "gwen", domain="a.example", groups=["hub-admins"], amr=["pwd", "mfa"])

    oidc_sign_in(client, provider, username="gwen")

    assert client.session[SSO_SESSION_KEY]["mfa"] is False
    assert "/accounts/two-factor/" in client.get(f"/t/{tenant_a.slug}/")["Location"]


def test_a_role_change_at_the_idp_applies_at_the_next_sign_in(
    tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    email = idp_user(oidc_idp, "emil", domain="a.example", groups=["hub-editors"])

    oidc_sign_in(Client(), provider, username="emil")
    membership = membership_of(email, tenant_a)
    assert membership is not None
    assert (membership.role, membership.locales) == (Role.LOCALIZATION_EDITOR, ["de"])

    oidc_idp.users["emil"].groups = ["hub-viewers", "hub-admins"]  # the first mapping that matches wins
    oidc_sign_in(Client(), provider, username="emil")
    membership = membership_of(email, tenant_a)
    assert membership is not None and membership.role == Role.ADMIN
    assert get_user_model().objects.filter(email=email).count() == 1  # the same account, found by subject


def test_removal_from_the_idp_group_removes_access(
    tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    email = idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    oidc_sign_in(Client(), provider, username="vic")
    assert membership_of(email, tenant_a) is not None

    oidc_idp.users["vic"].groups = ["marketing"]
    client = Client()
    response = oidc_sign_in(client, provider, username="vic")

    assert response.status_code == 403
    assert "none of your groups gives access" in response.content.decode()
    assert membership_of(email, tenant_a) is None
    assert "_auth_user_id" not in client.session
    [denied] = sso_events(tenant_a, "denied")
    assert denied.changes["reason"] == "no_role"


def test_an_address_outside_the_tenants_verified_domains_is_refused(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    email = idp_user(oidc_idp, "mallory", domain="unverified.example", groups=["hub-admins"])

    response = oidc_sign_in(client, provider, username="mallory")

    assert response.status_code == 403
    assert "domain is not verified" in response.content.decode()
    assert not get_user_model().objects.filter(email=email).exists()
    assert sso_events(tenant_a, "denied")[0].changes["reason"] == "domain_not_verified"


def test_another_tenants_provider_cannot_enter_this_tenant(
    tenant_a: Tenant,
    tenant_b: Tenant,
    alice: Any,
    oidc_idp: OidcSimulator,
    oidc_provider: MakeProvider,
) -> None:
    oidc_provider(tenant_a, domain="a.example")
    provider_b = oidc_provider(tenant_b, domain="b.example")
    # B's IdP vouches for an address in A's verified domain (alice's, even): no account is linked or made.
    idp_user(oidc_idp, "alice-at-b", domain="a.example", groups=["hub-admins"])
    response = oidc_sign_in(Client(), provider_b, username="alice-at-b")
    assert response.status_code == 403
    assert not ExternalIdentity.objects.filter(identity_provider=provider_b).exists()

    # A genuine user of B gets into B only: A's pages answer 404.
    email = idp_user(oidc_idp, "bert", domain="b.example", groups=["hub-admins"], amr=["mfa"])
    provider_b.accept_idp_mfa = True
    provider_b.save()
    client = Client()
    assert oidc_sign_in(client, provider_b, username="bert").status_code == 302
    assert membership_of(email, tenant_b) is not None and membership_of(email, tenant_a) is None
    assert client.get(f"/t/{tenant_b.slug}/").status_code == 200
    assert client.get(f"/t/{tenant_a.slug}/").status_code == 404


@pytest.mark.parametrize(
    ("next_url", "lands"),
    [
        ("/accounts/profile/", "/accounts/profile/"),
        ("https://evil.example/phish", HOME),
        ("//evil.example/phish", HOME),
        ("javascript:alert(1)", HOME),
    ],
)
def test_next_stays_on_this_site(
    client: Client,
    tenant_a: Tenant,
    oidc_idp: OidcSimulator,
    oidc_provider: MakeProvider,
    next_url: str,
    lands: str,
) -> None:
    provider = oidc_provider(tenant_a, domain="a.example")
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])

    response = oidc_sign_in(client, provider, username="vic", next_url=next_url)

    assert response.status_code == 302 and response["Location"] == lands


def test_several_pending_sign_ins_in_one_session_each_complete(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    from tests.fixtures.oidc import oidc_authorize

    provider = oidc_provider(tenant_a, domain="a.example")
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    first = oidc_authorize(client, provider, username="vic", next_url="/accounts/profile/")
    second = oidc_authorize(client, provider, username="vic")  # another tab

    assert client.get(first)["Location"] == "/accounts/profile/"
    assert client.get(second)["Location"] == HOME


def test_the_sign_in_is_counted(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    from apps.observability.metrics import SSO_SIGN_INS

    provider = oidc_provider(tenant_a, domain="a.example")
    idp_user(oidc_idp, "vic", domain="a.example", groups=["hub-viewers"])
    counter = SSO_SIGN_INS.labels(protocol="oidc", outcome="success")
    before = counter._value.get()

    oidc_sign_in(client, provider, username="vic")

    assert counter._value.get() == before + 1


def test_the_tenants_sign_in_address_sends_anyone_to_its_idp(
    client: Client, tenant_a: Tenant, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    oidc_provider(tenant_a, domain="a.example")

    response = client.get(reverse("accounts:sso-tenant", args=[tenant_a.slug]))

    assert response.status_code == 302 and response["Location"].startswith(f"{oidc_idp.base_url}/authorize?")


def test_an_enforcing_tenant_sends_a_password_session_to_its_idp_without_a_loop(
    client: Client, tenant_a: Tenant, alice: Any, oidc_idp: OidcSimulator, oidc_provider: MakeProvider
) -> None:
    from tests.fixtures.auth import login_verified

    oidc_provider(tenant_a, domain="a.example")
    tenant_a.sso_enforced = True
    tenant_a.save()
    login_verified(client, alice)

    first = client.get(f"/t/{tenant_a.slug}/")
    assert first.status_code == 302 and first["Location"].startswith(f"/accounts/sso/t/{tenant_a.slug}/")
    second = client.get(first["Location"])
    assert second.status_code == 302 and second["Location"].startswith(f"{oidc_idp.base_url}/authorize?")
