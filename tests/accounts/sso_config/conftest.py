"""SSO configuration tests: a loopback DNS server for domain verification, signed SAML IdP metadata, and a
ready OIDC provider of tenant A. The tenants, users and clients come from tests/fixtures/."""

from __future__ import annotations

import datetime
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from apps.accounts.models import IdentityProvider
from apps.accounts.services.sso_config import provider_create
from apps.tenants.models import Tenant

#: The OIDC client secret of `oidc_a`: tests look for it in pages, answers, logs and audit rows.
CLIENT_SECRET = "s3cret-client-value-7Hq2"


@dataclass
class DnsStub:
    """A DNS server on 127.0.0.1 (UDP) that answers TXT queries from `records` (name → strings)."""

    address: str
    records: dict[str, list[str]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)


@pytest.fixture
def dns_stub(settings: Any) -> Iterator[DnsStub]:
    """Serve TXT records on a free loopback port and point HUB_SSO_DNS_RESOLVER at it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stub = DnsStub(address=f"127.0.0.1:{sock.getsockname()[1]}")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, client = sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            stub.queries.append(name)
            values = stub.records.get(name)
            if values is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT and values:
                quoted = [f'"{v}"' for v in values]
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, quoted)
                )
            sock.sendto(response.to_wire(), client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    settings.HUB_SSO_DNS_RESOLVER = stub.address
    settings.HUB_SSO_DNS_TIMEOUT = 2.0
    try:
        yield stub
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


@pytest.fixture
def dead_resolver(settings: Any) -> Iterator[None]:
    """A loopback UDP port nobody answers on: lookups time out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # bound so nobody else takes it; never read
    settings.HUB_SSO_DNS_RESOLVER = f"127.0.0.1:{sock.getsockname()[1]}"
    settings.HUB_SSO_DNS_TIMEOUT = 0.3
    try:
        yield
    finally:
        sock.close()


def _certificate() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)


@pytest.fixture(scope="session")
def saml_metadata() -> str:
    """IdP metadata as Okta or Keycloak publish it: entity ID, a signing certificate, a redirect SSO URL."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com/saml">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false"
      protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>
      <ds:X509Certificate>{_certificate()}</ds:X509Certificate>
    </ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="https://idp.example.com/saml/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"""


@pytest.fixture
def client_secret() -> str:
    return CLIENT_SECRET


@pytest.fixture
def oidc_a(tenant_a: Tenant, alice: Any) -> IdentityProvider:
    """Tenant A's OIDC provider (client secret CLIENT_SECRET)."""
    return provider_create(
        tenant=tenant_a,
        data={
            "name": "Acme Okta",
            "protocol": "oidc",
            "oidc_discovery_url": "https://idp.example.com/.well-known/openid-configuration",
            "oidc_client_id": "hub-client",
            "oidc_client_secret": CLIENT_SECRET,
        },
        actor=alice,
    )
