"""The OpenID Connect client (connectors/oidc/client.py) against the real loopback provider, no Django:
the code flow with PKCE, what the provider refuses (replayed code, wrong verifier, unregistered redirect URI,
no PKCE), what the client refuses (HS256 with a public key, oversized or malformed tokens), claim mapping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.http import make_session
from connectors.oidc.client import (
    MAX_TOKEN_BYTES,
    AuthorizationRequest,
    OidcClient,
    OidcError,
    OidcReason,
    ProviderMetadata,
    claims_fields,
)
from connectors.oidc.simulator import DEMO_PASSWORD, OidcSimulator
from tests.fixtures.simulators import StartSimulator

REDIRECT = "http://127.0.0.1:9/callback"
SECRET = "client-secret-never-logged-0042"


@pytest.fixture
def idp(simulator: StartSimulator) -> OidcSimulator:
    sim = simulator(OidcSimulator, counts={})
    sim.add_client("rp", SECRET, [REDIRECT])
    return sim


def client_for(idp: OidcSimulator, **kwargs: Any) -> OidcClient:
    options: dict[str, Any] = {"client_id": "rp", "client_secret": SECRET, "redirect_uri": REDIRECT, **kwargs}
    return OidcClient(
        session=make_session(allow_hosts=["127.0.0.1"]),
        discovery_url=idp.discovery_url,
        scopes="openid email profile groups",
        **options,
    )


def authorize(auth: AuthorizationRequest, username: str = "grace") -> str:
    """Sign in at the provider's form; return the code it redirects back with (after checking the state)."""
    answer = requests.post(
        auth.url, data={"username": username, "password": DEMO_PASSWORD}, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == [auth.state]
    return query["code"][0]


def test_code_flow_with_pkce_yields_verified_claims(idp: OidcSimulator) -> None:
    client = client_for(idp)
    auth = client.authorization_request()
    params = parse_qs(urlsplit(auth.url).query)
    assert params["code_challenge_method"] == ["S256"] and params["scope"] == ["openid email profile groups"]
    assert auth.code_verifier not in auth.url

    claims = client.complete(code=authorize(auth), code_verifier=auth.code_verifier, nonce=auth.nonce)

    assert claims["iss"] == idp.base_url and claims["nonce"] == auth.nonce and "at_hash" in claims
    fields = claims_fields(claims, groups_claim="groups")
    assert fields["email"] == "grace@globex.example" and fields["groups"] == ("hub-admins",)
    assert fields["auth_methods"] == ("pwd", "otp", "mfa")
    assert fields["subject"] == idp.users["grace"].sub


def test_a_code_works_once(idp: OidcSimulator) -> None:
    client = client_for(idp)
    auth = client.authorization_request()
    code = authorize(auth)
    client.complete(code=code, code_verifier=auth.code_verifier, nonce=auth.nonce)

    with pytest.raises(OidcError) as refused:
        client.complete(code=code, code_verifier=auth.code_verifier, nonce=auth.nonce)
    assert refused.value.reason is OidcReason.TOKEN_EXCHANGE_FAILED and "invalid_grant" in str(refused.value)


def test_a_wrong_code_verifier_is_refused(idp: OidcSimulator) -> None:
    client = client_for(idp)
    auth = client.authorization_request()
    with pytest.raises(OidcError) as refused:
        client.complete(code=authorize(auth), code_verifier="x" * 64, nonce=auth.nonce)
    assert refused.value.reason is OidcReason.TOKEN_EXCHANGE_FAILED


def test_a_wrong_client_secret_is_refused_without_echoing_it(idp: OidcSimulator) -> None:
    auth = client_for(idp).authorization_request()
    wrong = client_for(idp, client_secret="wrong-secret-value-0042")
    with pytest.raises(OidcError) as refused:
        wrong.complete(code=authorize(auth), code_verifier=auth.code_verifier, nonce=auth.nonce)
    assert refused.value.reason is OidcReason.TOKEN_EXCHANGE_FAILED
    assert "wrong-secret" not in str(refused.value) and "invalid_client" in str(refused.value)


def test_the_provider_matches_redirect_uris_exactly_and_requires_pkce(idp: OidcSimulator) -> None:
    other = client_for(idp, redirect_uri=REDIRECT + "/../evil").authorization_request()
    page = requests.get(other.url, timeout=10)
    assert page.status_code == 400 and "Location" not in page.headers

    auth = client_for(idp).authorization_request()
    without_pkce = auth.url.replace("code_challenge=", "dropped=")
    answer = requests.get(without_pkce, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == ["invalid_request"]


def test_client_secret_post_is_used_when_basic_is_not_offered(idp: OidcSimulator) -> None:
    original = idp.discovery
    idp.routes[0] = (
        idp.routes[0][0],
        idp.routes[0][1],
        lambda request: _only_post(original(request)),
    )
    client = client_for(idp)
    auth = client.authorization_request()
    assert client.metadata().token_auth_methods == ("client_secret_post",)
    claims = client.complete(code=authorize(auth), code_verifier=auth.code_verifier, nonce=auth.nonce)
    assert claims["sub"] == idp.users["grace"].sub


def _only_post(response: Any) -> Any:
    doc = json.loads(response.body)
    doc["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    response.body = json.dumps(doc).encode()
    return response


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_hs256_signed_with_the_public_key_is_refused(idp: OidcSimulator) -> None:
    """The classic key-confusion attack: an HMAC keyed with the RSA public key anyone can fetch."""
    client = client_for(idp)
    public = json.dumps(idp.signing_key.as_dict(private=False)).encode()
    header = _b64(json.dumps({"alg": "HS256", "kid": idp.signing_key.kid}).encode())
    payload = _b64(json.dumps({"iss": idp.base_url, "aud": "rp", "sub": "x", "exp": 2**31}).encode())
    signature = _b64(hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    with pytest.raises(OidcError) as refused:
        client.verify_id_token(f"{header}.{payload}.{signature}", nonce="n")
    assert refused.value.reason is OidcReason.BAD_ALGORITHM


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b", "%%%.e30.sig", "e30.e30.sig", "x" * (MAX_TOKEN_BYTES + 1)],
)
def test_malformed_tokens_are_refused(idp: OidcSimulator, token: str) -> None:
    with pytest.raises(OidcError) as refused:
        client_for(idp).verify_id_token(token, nonce="n")
    assert refused.value.reason in {OidcReason.MALFORMED_TOKEN, OidcReason.BAD_ALGORITHM}


def test_a_discovery_document_for_another_issuer_is_refused() -> None:
    doc = {"issuer": "https://idp.attacker.example", "authorization_endpoint": "https://a/x"}
    with pytest.raises(OidcError) as refused:
        ProviderMetadata.parse(doc, expected_issuer="https://idp.example")
    assert refused.value.reason is OidcReason.WRONG_ISSUER


def test_claims_mapping_takes_groups_from_the_configured_claim() -> None:
    claims = {
        "sub": "s1",
        "email": "e@x.example",
        "email_verified": "false",
        "realm_access": {"roles": ["hub-admins", "offline_access"]},
        "amr": ["pwd", "hwk"],
        "acr": "urn:mace:incommon:iap:silver",
        "sid": "session-1",
    }
    fields = claims_fields(claims, groups_claim="realm_access.roles")
    assert fields["groups"] == ("hub-admins", "offline_access")
    assert fields["auth_methods"] == ("pwd", "hwk", "urn:mace:incommon:iap:silver")
    assert fields["email_verified"] is False and fields["session_index"] == "session-1"
    assert claims_fields({"sub": "s", "roles": "one"}, groups_claim="roles")["groups"] == ("one",)
    assert claims_fields({"sub": "s"}, groups_claim="groups")["email_verified"] is True


def test_the_access_token_reads_userinfo_and_a_made_up_one_does_not(idp: OidcSimulator) -> None:
    client = client_for(idp)
    auth = client.authorization_request()
    tokens = client.exchange_code(code=authorize(auth, "ed"), code_verifier=auth.code_verifier)
    info = requests.get(
        f"{idp.base_url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert info.status_code == 200 and info.json()["email"] == "ed@globex.example"
    bad = requests.get(f"{idp.base_url}/userinfo", headers={"Authorization": "Bearer made-up"}, timeout=10)
    assert bad.status_code == 401
