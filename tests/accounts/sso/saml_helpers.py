"""SAML test helpers (no fixtures): a tenant's SAML identity provider wired to a running IdP simulator, and
the browser's round trip over real HTTP (Django test client on our side, requests on the IdP's)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Role, Tenant
from connectors.saml.simulator import DEMO_OTP, IdpUser, SamlIdpSimulator

#: onelogin refuses an ACS URL on a host without a dot ("testserver"): our public URL in these tests.
PUBLIC_URL = "http://localhost:8000"


def saml_provider(
    idp: SamlIdpSimulator,
    *,
    tenant: Tenant,
    domain: str = "acme.example",
    accept_idp_mfa: bool = False,
    client: Client | None = None,
) -> IdentityProvider:
    """A SAML identity provider of `tenant` (metadata by URL), its verified domain, two role mappings
    (hub-admins → admin, hub-viewers → viewer), registered at the IdP from our SP metadata."""
    provider = IdentityProvider.objects.create(
        tenant=tenant,
        name=f"{tenant.slug} SAML",
        protocol=IdentityProvider.Protocol.SAML,
        saml_metadata_url=idp.metadata_url,
        groups_claim="groups",
        accept_idp_mfa=accept_idp_mfa,
    )
    SsoDomain.objects.create(
        tenant=tenant, identity_provider=provider, domain=domain, verified_at=timezone.now()
    )
    RoleMapping.objects.create(tenant=tenant, group="hub-admins", role=Role.ADMIN, position=0)
    RoleMapping.objects.create(tenant=tenant, group="hub-viewers", role=Role.VIEWER, position=1)
    metadata = (client or Client()).get(reverse("accounts:saml-metadata", args=[provider.pk]))
    idp.sp_register(metadata=metadata.content.decode())
    return provider


@dataclass
class Answer:
    """The IdP's auto-post form: where it posts and what."""

    acs_url: str
    saml_response: str
    relay_state: str

    @property
    def acs_path(self) -> str:
        return urlsplit(self.acs_url).path


def form_answer(page: str) -> Answer:
    action = re.search(r'<form id="saml" method="post" action="([^"]+)"', page)
    response = re.search(r'name="SAMLResponse" value="([^"]*)"', page)
    relay = re.search(r'name="RelayState" value="([^"]*)"', page)
    assert action and response and relay, page[:500]
    return Answer(unescape(action.group(1)), unescape(response.group(1)), unescape(relay.group(1)))


def start(client: Client, provider: IdentityProvider, *, next_url: str = "") -> str:
    """Start at the hub; return the IdP URL the hub redirected to (with the SAMLRequest)."""
    url = reverse("accounts:sso-start", args=[provider.pk])
    response = client.get(url + (f"?next={next_url}" if next_url else ""))
    assert response.status_code == 302, response.content[:300]
    assert response["Location"].startswith("http://127.0.0.1:")
    return str(response["Location"])


def idp_login(idp_url: str, *, email: str, password: str = IdpUser.password, otp: str = "") -> Answer:
    """The user at the IdP over real HTTP: GET the login form, POST the credentials, get the auto-post."""
    form = requests.get(idp_url, timeout=10)
    assert form.status_code == 200
    assert 'name="SAMLRequest"' in form.text
    query = parse_qs(urlsplit(idp_url).query)
    base = f"{urlsplit(idp_url).scheme}://{urlsplit(idp_url).netloc}"
    page = requests.post(
        f"{base}/idp/login",
        data={
            "email": email,
            "password": password,
            "otp": otp,
            "SAMLRequest": query["SAMLRequest"][0],
            "RelayState": query.get("RelayState", [""])[0],
        },
        timeout=10,
    )
    assert page.status_code == 200, page.text[:300]
    return form_answer(page.text)


def post_answer(client: Client, answer: Answer, **overrides: Any) -> Any:
    data = {"SAMLResponse": answer.saml_response, "RelayState": answer.relay_state, **overrides}
    return client.post(answer.acs_path, data)


def sso_events(tenant: Tenant) -> list[Any]:
    """The tenant's audited SSO sign-ins, oldest first."""
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action="security.sso_login").order_by("seq"))


def sign_in(client: Client, provider: IdentityProvider, *, email: str, otp: str = "") -> tuple[Any, Answer]:
    """The whole SP-initiated round trip; returns the ACS response and the answer posted."""
    answer = idp_login(start(client, provider), email=email, otp=otp)
    return post_answer(client, answer), answer


__all__ = [
    "DEMO_OTP",
    "PUBLIC_URL",
    "Answer",
    "idp_login",
    "post_answer",
    "saml_provider",
    "sign_in",
    "sso_events",
    "start",
]
