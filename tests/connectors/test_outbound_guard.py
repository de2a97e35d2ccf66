"""The outbound guard under attack, with real listeners on loopback (issue 14, SSRF).

A request the guard lets through reaches the listener (pytest-socket allows loopback), so every "saw no
request" assertion below fails on a guard that does not hold.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from connectors.errors import (
    AddressNotAllowed,
    ConnectorError,
    InsecureUrl,
    RedirectRefused,
    VendorUnavailable,
)
from connectors.http import address_problem, make_session
from connectors.hubspot.connector import HubSpotConnector
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.simulator import SalesforceSimulator
from connectors.sap.connector import SapConnector
from tests.fakes.openai_server import FakeOpenAI
from tests.fixtures.simulators import StartFake, StartSimulator

SECRET = "Bearer sk-outbound-secret-7f3a"


@pytest.fixture
def vendor(openai_server: StartFake) -> FakeOpenAI:
    """The allow-listed endpoint, reached as `localhost`."""
    return openai_server(FakeOpenAI)


@pytest.fixture
def internal(openai_server: StartFake) -> FakeOpenAI:
    """An internal service on 127.0.0.1 that is not allow-listed: it must never be reached."""
    return openai_server(FakeOpenAI)


def port_of(server: FakeOpenAI) -> int:
    return int(server.base_url.split(":")[2].split("/")[0])


# --- address classification ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "127.0.0.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "0.0.0.0",  # noqa: S104 - an address to classify, not to bind
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.88.99.1",  # 6to4 relay anycast
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "2001:db8::1",  # documentation
        "5f00::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"],
)
def test_public_addresses_and_their_embedded_forms_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_a_host_resolving_to_nat64_of_loopback_is_refused(
    monkeypatch: pytest.MonkeyPatch, internal: FakeOpenAI
) -> None:
    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "nat64.vendor.test":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::7f00:1", 443, 0, 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(AddressNotAllowed, match=r"carries IPv4 127\.0\.0\.1"):
        make_session().get("https://nat64.vendor.test/")


# --- redirects ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_a_private_address_is_refused_and_the_target_sees_nothing(
    vendor: FakeOpenAI, internal: FakeOpenAI, status: int
) -> None:
    target = f"http://127.0.0.1:{port_of(internal)}/admin/drop"
    vendor.fail_next(status, body=b"", headers={"Location": target})
    session = make_session(allow_hosts=["localhost"])  # the vendor by name; 127.0.0.1 is not allowed
    with pytest.raises(RedirectRefused, match="redirects are not followed") as caught:
        session.post(
            f"http://localhost:{port_of(vendor)}/v1/login", headers={"Authorization": SECRET}, data=b"x"
        )
    assert len(vendor.requests) == 1
    assert internal.requests == []
    assert "sk-outbound" not in str(caught.value)


def test_a_vendor_connector_does_not_follow_a_redirect_with_its_token(
    vendor: FakeOpenAI, internal: FakeOpenAI
) -> None:
    token = "pat-na1-11111111-2222-3333-4444-555555555555"
    vendor.fail_next(302, body=b"", headers={"Location": f"http://127.0.0.1:{port_of(internal)}/steal"})
    connector = HubSpotConnector(
        {"base_url": f"http://localhost:{port_of(vendor)}", "auth": "private_app", "access_token": token},
        session=make_session(allow_hosts=["localhost"], max_retries=0),
    )
    with pytest.raises(RedirectRefused):
        connector.check_connection()
    assert internal.requests == []
    assert token not in repr(vendor.requests[1:])  # one call only, to the vendor


# --- DNS rebinding --------------------------------------------------------------------------------------
def test_the_connection_goes_to_the_checked_address_not_a_rebound_one(
    monkeypatch: pytest.MonkeyPatch, internal: FakeOpenAI
) -> None:
    """Public first (passes the check), then 127.0.0.1: a second lookup at connect would hit `internal`."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"] + ["127.0.0.1"] * 10)
    asked: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.vendor.test":
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port or 80))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    connected: list[Any] = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> Any:
        connected.append(address[0])
        if address[0] == "93.184.216.34":  # the checked public address; no traffic leaves the test
            raise ConnectionRefusedError("test: public address not reachable")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    session = make_session(max_retries=0)
    with pytest.raises(VendorUnavailable):
        session.get(f"http://rebind.vendor.test:{port_of(internal)}/", headers={"Authorization": SECRET})
    assert asked == ["rebind.vendor.test"]  # resolved once
    assert connected == ["93.184.216.34"]
    assert internal.requests == []


def test_pinned_tls_connection_verifies_the_certificate_by_host_name(simulator: StartSimulator) -> None:
    """The pinned connection keeps SNI, Host and certificate checks for the name (cert is for localhost)."""
    sim = simulator(SalesforceSimulator, counts={"contacts": 1})
    port = int(sim.base_url.split(":")[2].split("/")[0])
    session = make_session(ca_bundle=sim.ca_bundle, max_retries=0)
    pinned: list[str] = []

    def resolve(host: str, port: int | None) -> str:
        pinned.append(host)
        return "127.0.0.1"  # as if `localhost` had passed the public-address check

    session.get_adapter("https://").resolve = resolve  # type: ignore[attr-defined]
    response = session.get(f"https://localhost:{port}/")
    assert pinned == ["localhost"]
    assert response.status_code < 500
    assert response.request.headers["Host"] == f"localhost:{port}"


# --- https only ------------------------------------------------------------------------------------------
def test_plain_http_is_refused_when_https_is_required(vendor: FakeOpenAI) -> None:
    session = make_session(allow_hosts=["localhost"], require_https=True)
    with pytest.raises(InsecureUrl, match="use https"):
        session.post(f"http://localhost:{port_of(vendor)}/v1/x", headers={"Authorization": SECRET})
    assert vendor.requests == []


def test_non_http_schemes_are_refused() -> None:
    with pytest.raises(InsecureUrl):
        make_session().get("file:///etc/passwd")


def test_salesforce_login_does_not_follow_a_redirect_with_the_consumer_secret(
    vendor: FakeOpenAI, internal: FakeOpenAI
) -> None:
    secret = "consumer-secret-5d1e9a"
    vendor.fail_next(307, body=b"", headers={"Location": f"http://127.0.0.1:{port_of(internal)}/token"})
    connector = SalesforceConnector(
        {
            "login_url": f"http://localhost:{port_of(vendor)}",
            "auth": "client_credentials",
            "client_id": "key",
            "client_secret": secret,
        },
        session=make_session(allow_hosts=["localhost"], max_retries=0),
    )
    with pytest.raises(ConnectorError):
        connector.check_connection()
    assert internal.requests == []


@pytest.mark.parametrize("auth", ["basic", "ws_security"])
def test_sap_password_never_travels_over_plain_http_when_https_is_required(
    vendor: FakeOpenAI, auth: str
) -> None:
    connector = SapConnector(
        {
            "endpoint_url": f"http://localhost:{port_of(vendor)}/sap/bc/srt/scs",
            "username": "HUB",
            "password": "sap-password-8c2d",
            "auth": auth,
        },
        session=make_session(allow_hosts=["localhost"], require_https=True, max_retries=0),
    )
    with pytest.raises(InsecureUrl):
        connector.check_connection()
    assert vendor.requests == []


def test_production_requires_https_and_allow_lists_nothing() -> None:
    from tests.fixtures.processes import PRODUCTION_ENV, manage

    code = (
        "from apps.integrations.conf import allow_hosts, connector_session; s = connector_session(); "
        "print(s.require_https, sorted(s.allow_hosts), allow_hosts())"
    )
    result = manage(PRODUCTION_ENV, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["True", "[]", "()"]
