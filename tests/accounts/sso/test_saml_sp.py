"""The SAML service provider's edges (connectors.saml.sp), the IdP metadata source (guarded fetch, cache,
stale copy) and the IdP simulator's admin API."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.cache import cache
from django.test import Client

from apps.accounts.models import IdentityProvider
from apps.accounts.services import saml as saml_services
from apps.tenants.models import Tenant
from connectors.saml import SamlError, SamlReason, ServiceProvider
from connectors.saml.simulator import AC_MFA, SamlIdpSimulator
from tests.accounts.sso.saml_helpers import PUBLIC_URL, saml_provider, start
from tests.fixtures.simulators import StartSimulator

ACS = "http://localhost:8000/accounts/sso/1/saml/acs/"
ENTITY = "http://localhost:8000/accounts/sso/1/saml/metadata/"


@pytest.fixture
def idp(simulator: StartSimulator, settings: Any) -> SamlIdpSimulator:
    settings.HUB_CHANNELS_PUBLIC_URL = PUBLIC_URL
    return simulator(SamlIdpSimulator)


def test_idp_metadata_with_a_dtd_or_without_a_certificate_is_refused(idp: SamlIdpSimulator) -> None:
    good = idp.metadata_xml()
    with_dtd = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + good.split("?>", 1)[-1]
    )
    without_cert = good.replace("KeyDescriptor", "Unknown")
    for bad in (with_dtd, without_cert, "<not-metadata/>", "garbage"):
        with pytest.raises(SamlError) as refused:
            ServiceProvider(entity_id=ENTITY, acs_url=ACS, idp_metadata_xml=bad)
        assert refused.value.reason in (SamlReason.METADATA, SamlReason.MALFORMED)
        assert "passwd" not in str(refused.value)


def test_without_idp_metadata_only_sp_metadata_works() -> None:
    sp = ServiceProvider(entity_id=ENTITY, acs_url=ACS)
    assert ENTITY in sp.metadata()
    with pytest.raises(SamlError) as refused:
        sp.authn_request("")
    assert refused.value.reason is SamlReason.METADATA


def test_the_authn_request_goes_to_the_idps_sso_url(idp: SamlIdpSimulator) -> None:
    sp = ServiceProvider(entity_id=ENTITY, acs_url=ACS, idp_metadata_xml=idp.metadata_xml())
    url, request_id = sp.authn_request("relay")
    assert url.startswith(idp.sso_url + "?")
    query = parse_qs(urlsplit(url).query)
    assert query["RelayState"] == ["relay"]
    assert request_id and request_id in idp.server().parse_authn_request(query["SAMLRequest"][0]).message.id


@pytest.mark.django_db
def test_metadata_from_a_private_address_is_refused_by_the_outbound_guard(
    idp: SamlIdpSimulator, tenant_a: Tenant, settings: Any
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    settings.HUB_CONNECTOR_ALLOW_HOSTS = []  # production-like: loopback is not allowed
    cache.delete_many([saml_services._metadata_key(provider, k) for k in ("fresh", "stale")])
    client = Client()

    response = client.get(f"/accounts/sso/{provider.pk}/start/")

    assert response.status_code == 503
    assert b"saml_metadata" in response.content


@pytest.mark.django_db
def test_a_failed_metadata_refresh_keeps_the_last_good_copy(idp: SamlIdpSimulator, tenant_a: Tenant) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    good = saml_services.idp_metadata(provider, refresh=True)
    idp.inject(outage="503")
    try:
        assert saml_services.idp_metadata(provider, refresh=True) == good
        cache.delete(saml_services._metadata_key(provider, "stale"))
        with pytest.raises(saml_services.SamlUnavailable):
            saml_services.idp_metadata(provider, refresh=True)
    finally:
        idp.clear_faults()


@pytest.mark.django_db
def test_the_start_keeps_the_request_in_a_signed_short_lived_cookie(
    idp: SamlIdpSimulator, tenant_a: Tenant
) -> None:
    provider = saml_provider(idp, tenant=tenant_a)
    client = Client()
    start(client, provider)
    cookie = client.cookies[saml_services.PENDING_COOKIE]
    assert cookie["max-age"] == saml_services.PENDING_SECONDS
    assert cookie["path"] == "/accounts/sso/"
    assert cookie["httponly"]
    other = IdentityProvider(pk=provider.pk + 1000, tenant=tenant_a)
    assert saml_services.pending_load(value=cookie.value, provider=provider) is not None
    assert saml_services.pending_load(value=cookie.value, provider=other) is None


def test_the_simulator_admin_api(idp: SamlIdpSimulator) -> None:
    admin = idp.base_url + "/__admin/"
    user: dict[str, Any] = {"email": "eve@acme.example", "groups": ["ops"], "mfa": True}
    assert requests.post(admin + "user", json=user, timeout=5).status_code == 200
    registered = requests.post(admin + "sp", json={"entity_id": ENTITY, "acs_url": ACS}, timeout=5)
    assert registered.json() == {"entity_id": ENTITY}
    assert requests.post(admin + "attack", json={"kind": "nonsense"}, timeout=5).status_code == 400
    assert requests.post(admin + "sp", json={"entity_id": ENTITY}, timeout=5).status_code == 400
    old_cert = idp.keys.cert_b64
    assert requests.post(admin + "rotate_key", json={}, timeout=5).status_code == 200
    assert idp.keys.cert_b64 != old_cert
    assert idp.keys.cert_b64 in requests.get(idp.metadata_url, timeout=5).text

    sp = ServiceProvider(entity_id=ENTITY, acs_url=ACS, idp_metadata_xml=idp.metadata_xml())
    url, request_id = sp.authn_request("")
    saml_request = parse_qs(urlsplit(url).query)["SAMLRequest"][0]
    answer = requests.post(
        admin + "respond", json={"saml_request": saml_request, "email": "eve@acme.example"}, timeout=10
    ).json()
    assertion = sp.process_response(answer["saml_response"], request_id=request_id)
    assert (assertion.email, assertion.values("groups")) == ("eve@acme.example", ("ops",))
    assert assertion.authn_context_class_refs == (AC_MFA,)
    assert assertion.issuer == idp.entity_id


def test_claims_take_email_groups_and_entra_auth_methods_from_the_assertion() -> None:
    from connectors.saml import SamlAssertion

    assertion = SamlAssertion(
        name_id="00u1a2b3c4",  # a persistent NameID: the e-mail comes from the attribute
        name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        session_index="s1",
        attributes={
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": ["Lin@Acme.example"],
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups": ["g-1", "g-2"],
            saml_services.AUTH_METHODS_ATTRIBUTE: ["http://schemas.microsoft.com/claims/multipleauthn"],
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": ["Lin"],
        },
        authn_context_class_refs=("urn:oasis:names:tc:SAML:2.0:ac:classes:Password",),
        assertion_id="_a1",
        not_on_or_after=0.0,
        issuer="https://sts.windows.net/tenant/",
    )
    provider = IdentityProvider(groups_claim="http://schemas.microsoft.com/ws/2008/06/identity/claims/groups")

    claims = saml_services.claims_from(provider=provider, assertion=assertion)

    assert (claims.subject, claims.email, claims.given_name) == ("00u1a2b3c4", "Lin@Acme.example", "Lin")
    assert claims.groups == ("g-1", "g-2")
    assert "http://schemas.microsoft.com/claims/multipleauthn" in claims.auth_methods
