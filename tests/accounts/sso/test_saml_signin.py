"""SAML 2.0 sign-in end to end: the hub (Django test client) and a real pysaml2 IdP over HTTP (requests).

JIT provisioning, role mapping from the groups attribute (applied at every sign-in), MFA accepted from the
AuthnContextClassRef vs TOTP still asked, SP metadata, key rotation picked up from the metadata URL.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from lxml import etree

from apps.accounts.models import ExternalIdentity
from apps.tenants.models import Membership, MembershipSource, Role, Tenant
from apps.tenants.sso import SSO_SESSION_KEY
from connectors.saml.simulator import AC_MFA, IdpUser, SamlIdpSimulator
from tests.accounts.sso.saml_helpers import DEMO_OTP, PUBLIC_URL, saml_provider, sign_in, sso_events
from tests.fixtures.simulators import StartSimulator

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp(simulator: StartSimulator, settings: Any) -> SamlIdpSimulator:
    settings.HUB_CHANNELS_PUBLIC_URL = PUBLIC_URL
    sim = simulator(SamlIdpSimulator)
    sim.user_add(IdpUser(email="grace@acme.example", groups=["hub-viewers"], given_name="Grace"))
    sim.user_add(IdpUser(email="mfa.admin@acme.example", groups=["hub-admins"], mfa=True))
    sim.user_add(IdpUser(email="nobody@acme.example", groups=["marketing"]))
    return sim


def test_sp_initiated_sign_in_creates_the_user_with_the_mapped_role(
    idp: SamlIdpSimulator, tenant_a: Tenant, client: Client
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)

    response, _ = sign_in(client, provider, email="grace@acme.example")

    assert response.status_code == 302
    assert response.cookies["hub_saml"].value == ""  # the pending request is used up
    user = get_user_model().objects.get(email="grace@acme.example")
    assert user.first_name == "Grace"
    assert not user.has_usable_password()
    membership = Membership.objects.get(user=user, tenant=tenant_a)
    assert (membership.role, membership.source) == (Role.VIEWER, MembershipSource.SSO)
    identity = ExternalIdentity.objects.get(identity_provider=provider, user=user)
    assert (identity.subject, identity.groups) == ("grace@acme.example", ["hub-viewers"])
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session[SSO_SESSION_KEY] == {"tenant": tenant_a.pk, "provider": provider.pk, "mfa": False}
    assert landing(client) == f"/t/{tenant_a.slug}/"  # a viewer needs no second factor
    [event] = sso_events(tenant_a)
    assert event.outcome == "success"
    assert event.changes["protocol"] == "saml"


def test_the_next_url_is_where_the_user_lands(
    idp: SamlIdpSimulator, tenant_a: Tenant, client: Client
) -> None:
    from tests.accounts.sso.saml_helpers import idp_login, post_answer, start

    provider = saml_provider(idp, tenant=tenant_a)
    target = reverse("accounts:profile")
    answer = idp_login(start(client, provider, next_url=target), email="grace@acme.example")
    assert post_answer(client, answer)["Location"] == target


def test_a_group_change_at_the_idp_changes_the_role_at_the_next_sign_in(
    idp: SamlIdpSimulator, tenant_a: Tenant
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    sign_in(Client(), provider, email="grace@acme.example")
    idp.user_add(IdpUser(email="grace@acme.example", groups=["hub-admins"]))

    response, _ = sign_in(Client(), provider, email="grace@acme.example")

    assert response.status_code == 302
    user = get_user_model().objects.get(email="grace@acme.example")
    assert Membership.objects.get(user=user, tenant=tenant_a).role == Role.ADMIN
    assert get_user_model().objects.filter(email="grace@acme.example").count() == 1


def test_no_mapped_group_is_refused_and_removal_from_the_group_removes_access(
    idp: SamlIdpSimulator, tenant_a: Tenant
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    refused, _ = sign_in(Client(), provider, email="nobody@acme.example")
    assert refused.status_code == 403
    assert b"none of your groups" in refused.content

    sign_in(Client(), provider, email="grace@acme.example")
    idp.user_add(IdpUser(email="grace@acme.example", groups=["marketing"]))
    client = Client()
    again, _ = sign_in(client, provider, email="grace@acme.example")

    assert again.status_code == 403
    assert "_auth_user_id" not in client.session
    user = get_user_model().objects.get(email="grace@acme.example")
    assert not Membership.objects.filter(user=user, tenant=tenant_a).exists()


def test_the_idps_mfa_stands_in_for_totp_when_the_tenant_accepts_it(
    idp: SamlIdpSimulator, tenant_a: Tenant, client: Client
) -> None:
    provider = saml_provider(idp, tenant=tenant_a, accept_idp_mfa=True)

    response, answer = sign_in(client, provider, email="mfa.admin@acme.example", otp=DEMO_OTP)

    assert response.status_code == 302
    assert AC_MFA in answer_contexts(answer.saml_response)
    assert client.session[SSO_SESSION_KEY]["mfa"] is True
    assert landing(client) == f"/t/{tenant_a.slug}/"  # an admin, and no TOTP asked


def test_an_admin_without_idp_mfa_is_still_asked_for_totp(
    idp: SamlIdpSimulator, tenant_a: Tenant, client: Client
) -> None:
    provider = saml_provider(idp, tenant=tenant_a, accept_idp_mfa=True)
    idp.user_add(IdpUser(email="ada@acme.example", groups=["hub-admins"], mfa=False))

    response, _ = sign_in(client, provider, email="ada@acme.example")

    assert response.status_code == 302
    assert client.session[SSO_SESSION_KEY]["mfa"] is False
    assert landing(client) == reverse("accounts:twofactor-enroll")


def test_idp_mfa_is_not_accepted_unless_the_tenant_says_so(
    idp: SamlIdpSimulator, tenant_a: Tenant, client: Client
) -> None:
    provider = saml_provider(idp, tenant=tenant_a, accept_idp_mfa=False)

    sign_in(client, provider, email="mfa.admin@acme.example", otp=DEMO_OTP)

    assert client.session[SSO_SESSION_KEY]["mfa"] is False
    assert landing(client) == reverse("accounts:twofactor-enroll")


def test_sp_metadata_is_valid_xml_with_our_entity_id_and_acs_url(
    idp: SamlIdpSimulator, tenant_a: Tenant, client: Client
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)

    response = client.get(reverse("accounts:saml-metadata", args=[provider.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/samlmetadata+xml"
    root = etree.fromstring(response.content)
    ns = {"md": "urn:oasis:names:tc:SAML:2.0:metadata"}
    assert root.get("entityID") == PUBLIC_URL + reverse("accounts:saml-metadata", args=[provider.pk])
    acs = root.find(".//md:AssertionConsumerService", ns)
    assert acs is not None
    assert acs.get("Location") == PUBLIC_URL + reverse("accounts:saml-acs", args=[provider.pk])
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    assert root.find("md:SPSSODescriptor", ns).get("WantAssertionsSigned") == "true"


def test_metadata_and_acs_of_an_unknown_or_oidc_provider_are_404(
    idp: SamlIdpSimulator, tenant_a: Tenant, client: Client
) -> None:
    from apps.accounts.models import IdentityProvider

    oidc = IdentityProvider.objects.create(tenant=tenant_a, name="oidc", protocol="oidc")
    for provider_id in (oidc.pk, 999_999):
        assert client.get(reverse("accounts:saml-metadata", args=[provider_id])).status_code == 404
        assert client.post(reverse("accounts:saml-acs", args=[provider_id])).status_code == 404


def test_a_rotated_idp_key_is_picked_up_from_the_metadata_url(
    idp: SamlIdpSimulator, tenant_a: Tenant
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    assert sign_in(Client(), provider, email="grace@acme.example")[0].status_code == 302  # metadata cached

    idp.rotate_key()

    assert sign_in(Client(), provider, email="grace@acme.example")[0].status_code == 302


def test_pasted_metadata_xml_works_without_a_url(idp: SamlIdpSimulator, tenant_a: Tenant) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    provider.saml_metadata_xml = idp.metadata_xml()
    provider.saml_metadata_url = ""
    provider.save()

    assert sign_in(Client(), provider, email="grace@acme.example")[0].status_code == 302


def answer_contexts(saml_response: str) -> list[str]:
    import base64

    root = etree.fromstring(base64.b64decode(saml_response))
    return [el.text for el in root.iter("{urn:oasis:names:tc:SAML:2.0:assertion}AuthnContextClassRef")]


def landing(client: Client) -> str:
    """Where the console sends the signed-in user (path of the last redirect, the page answering 200)."""
    response = client.get(reverse("console:home"), follow=True)
    assert response.status_code == 200
    return str(response.redirect_chain[-1][0]).split("?")[0] if response.redirect_chain else "/"


def test_no_email_or_assertion_content_reaches_the_logs(
    idp: SamlIdpSimulator, tenant_a: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    caplog.set_level("DEBUG")

    sign_in(Client(), provider, email="grace@acme.example")
    sign_in(Client(), provider, email="nobody@acme.example")  # refused: no mapped group
    idp.arm("xsw_wrap")
    sign_in(Client(), provider, email="grace@acme.example")  # refused: signature wrapping

    assert "security event sso_login success" in caplog.text
    for private in ("grace@acme.example", "nobody@acme.example", "mallory@evil.example", "SAMLResponse"):
        assert private not in caplog.text
