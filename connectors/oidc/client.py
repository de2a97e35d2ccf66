"""An OpenID Connect relying party (authorization code flow with PKCE) over the guarded HttpSession.

Pure: no Django. The hub keeps the pending login (state, nonce, code verifier) in the user's session and the
provider's discovery document and JWKS in its cache (a `DocumentStore`); this module does the protocol:
discovery (the issuer must be the one the URL names), the authorization URL, the code exchange, and the
id_token check (signature against the JWKS with RS256/ES256/PS256 only, iss, aud/azp, exp/iat/nbf with a small
leeway, nonce, at_hash). A token signed with a key the JWKS does not hold makes the client fetch the JWKS once
more (the provider may have rotated), at most once per `JWKS_REFRESH_SECONDS`, then refuse.

Every failure is an `OidcError` with a reason code; messages never carry a secret, a code or a token.
"""

from __future__ import annotations

import base64
import enum
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core.claims import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from connectors.errors import ConnectorError
from connectors.http import HttpSession, safe_url

WELL_KNOWN = "/.well-known/openid-configuration"
#: Asymmetric algorithms only: "none" and HS* (an HMAC keyed with a public key anyone can fetch) are refused.
ALLOWED_ALGORITHMS = ("RS256", "ES256", "PS256")
_KEY_TYPES = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}
LEEWAY_SECONDS = 60
JWKS_REFRESH_SECONDS = 60
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_TOKEN_BYTES = 16 * 1024


class OidcReason(enum.StrEnum):
    """Why an OpenID Connect sign-in failed (shown to the user as a reference, kept in the audit log)."""

    DISCOVERY_FAILED = "discovery_failed"
    WRONG_ISSUER = "wrong_issuer"
    JWKS_FAILED = "jwks_failed"
    STATE_MISMATCH = "state_mismatch"
    IDP_ERROR = "idp_error"
    TOKEN_EXCHANGE_FAILED = "token_exchange_failed"  # noqa: S105 - a reason code
    MALFORMED_TOKEN = "malformed_token"  # noqa: S105 - a reason code
    BAD_ALGORITHM = "bad_algorithm"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_AUDIENCE = "wrong_audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    NONCE_MISMATCH = "nonce_mismatch"
    AT_HASH_MISMATCH = "at_hash_mismatch"
    MISSING_CLAIM = "missing_claim"


class OidcError(Exception):
    """An OpenID Connect step failed; `reason` is the code, `str()` a message without secrets."""

    def __init__(self, reason: OidcReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DocumentStore(Protocol):
    """Where the client keeps discovery documents and key sets between requests (the hub: its cache)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, value: dict[str, Any]) -> None: ...

    def claim(self, key: str, seconds: int) -> bool:
        """True for the first caller in a `seconds` window, False for the others (a rate limit)."""
        ...


class NoStore:
    """Keep nothing: fetch every time (for one-off use; the hub hands a shared store)."""

    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def set(self, key: str, value: dict[str, Any]) -> None:
        return None

    def claim(self, key: str, seconds: int) -> bool:
        return True


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    token_auth_methods: tuple[str, ...]

    @classmethod
    def parse(cls, doc: Mapping[str, Any], *, expected_issuer: str) -> ProviderMetadata:
        """Check a discovery document: the endpoints we need are URLs, and the issuer is the expected one."""
        if doc.get("issuer") != expected_issuer:
            raise OidcError(
                OidcReason.WRONG_ISSUER,
                f"The discovery document names issuer {str(doc.get('issuer'))[:200]!r}, "
                f"not {expected_issuer!r}",
            )
        fields = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(name)
            if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
                raise OidcError(OidcReason.DISCOVERY_FAILED, f"The discovery document has no valid {name}")
            fields[name] = value
        methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return cls(
            issuer=expected_issuer,
            userinfo_endpoint=str(doc.get("userinfo_endpoint") or ""),
            token_auth_methods=tuple(str(m) for m in methods),
            **fields,
        )


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and what to keep until it comes back (in the user's session only)."""

    url: str
    state: str
    nonce: str
    code_verifier: str


def issuer_of(discovery_url: str) -> str:
    """The issuer a discovery URL belongs to: the URL without the well-known suffix."""
    url = discovery_url.strip()
    if url.endswith(WELL_KNOWN):
        return url[: -len(WELL_KNOWN)]
    return url.rstrip("/")


def discovery_url_of(url: str) -> str:
    """Accept an issuer or its discovery URL; return the discovery URL."""
    return issuer_of(url) + WELL_KNOWN


def _claim_path(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path for nested ones (Keycloak's realm_access.roles)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claims_fields(claims: Mapping[str, Any], *, groups_claim: str = "groups") -> dict[str, Any]:
    """The SsoClaims fields of verified id_token claims (plain dict: this module knows nothing of Django).

    Groups come from `groups_claim` (a list, or one string); `auth_methods` is the amr list plus acr. An
    absent `email_verified` counts as verified (Entra ID never sends it): the hub links and creates accounts
    only for domains the tenant verified, so the address's domain is vouched for anyway.
    """
    raw_groups = _claim_path(claims, groups_claim) if groups_claim else None
    if isinstance(raw_groups, str):
        raw_groups = [raw_groups]
    groups = tuple(str(g)[:200] for g in raw_groups or () if isinstance(g, str | int))
    amr = claims.get("amr")
    methods = [str(v) for v in amr] if isinstance(amr, list) else []
    if isinstance(claims.get("acr"), str) and claims["acr"]:
        methods.append(claims["acr"])
    email_verified = claims.get("email_verified", True)
    if isinstance(email_verified, str):  # some IdPs send "true"/"false"
        email_verified = email_verified.lower() == "true"
    return {
        "subject": str(claims["sub"]),
        "email": str(claims.get("email") or ""),
        "email_verified": bool(email_verified),
        "name": str(claims.get("name") or "")[:300],
        "given_name": str(claims.get("given_name") or "")[:150],
        "family_name": str(claims.get("family_name") or "")[:150],
        "groups": groups[:500],
        "auth_methods": tuple(methods[:50]),
        "session_index": str(claims.get("sid") or "")[:200],
    }


def _json_document(response: Any, what: str, reason: OidcReason) -> dict[str, Any]:
    if response.status_code != 200:
        raise OidcError(reason, f"The identity provider answered HTTP {response.status_code} for its {what}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise OidcError(reason, f"The identity provider's {what} is too large")
    try:
        doc = response.json()
    except ValueError:
        raise OidcError(reason, f"The identity provider's {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise OidcError(reason, f"The identity provider's {what} is not a JSON object")
    return doc


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


class OidcClient:
    """One relying party at one provider: the hub builds one per sign-in from the tenant's settings."""

    def __init__(
        self,
        *,
        session: HttpSession,
        discovery_url: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: str = "openid email profile",
        store: DocumentStore | None = None,
        leeway: int = LEEWAY_SECONDS,
    ) -> None:
        self.session = session
        self.discovery_url = discovery_url_of(discovery_url)
        self.issuer = issuer_of(discovery_url)
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        words = scopes.split()
        self.scopes = " ".join(["openid", *(w for w in words if w != "openid")])
        self.store: DocumentStore = store or NoStore()
        self.leeway = leeway
        session.add_secret(client_secret)

    # --- provider documents ----------------------------------------------------------------------------

    def _fetch(self, url: str, what: str, reason: OidcReason) -> dict[str, Any]:
        try:
            response = self.session.get(url, headers={"Accept": "application/json"})
        except ConnectorError as exc:
            raise OidcError(reason, f"Cannot fetch the identity provider's {what}: {exc}") from None
        return _json_document(response, what, reason)

    def metadata(self) -> ProviderMetadata:
        """The provider's discovery document (from the store when it holds one), checked."""
        key = f"discovery:{self.discovery_url}"
        doc = self.store.get(key)
        if doc is None:
            doc = self._fetch(self.discovery_url, "discovery document", OidcReason.DISCOVERY_FAILED)
            meta = ProviderMetadata.parse(doc, expected_issuer=self.issuer)
            self.store.set(key, doc)
            return meta
        return ProviderMetadata.parse(doc, expected_issuer=self.issuer)

    def jwks(self, *, refresh: bool = False) -> dict[str, Any]:
        """The provider's key set (stored), or a fresh one when `refresh`."""
        uri = self.metadata().jwks_uri
        key = f"jwks:{uri}"
        doc = None if refresh else self.store.get(key)
        if doc is None:
            doc = self._fetch(uri, "key set (JWKS)", OidcReason.JWKS_FAILED)
            if not isinstance(doc.get("keys"), list):
                raise OidcError(OidcReason.JWKS_FAILED, "The identity provider's key set has no keys")
            self.store.set(key, doc)
        return doc

    # --- the flow ------------------------------------------------------------------------------------

    def authorization_request(self, *, extra: Mapping[str, str] | None = None) -> AuthorizationRequest:
        """Build the authorization URL with a fresh state, nonce and PKCE (S256) verifier."""
        meta = self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            **(extra or {}),
        }
        separator = "&" if "?" in meta.authorization_endpoint else "?"
        return AuthorizationRequest(
            url=f"{meta.authorization_endpoint}{separator}{urlencode(params)}",
            state=state,
            nonce=nonce,
            code_verifier=verifier,
        )

    def exchange_code(self, *, code: str, code_verifier: str) -> dict[str, Any]:
        """Trade the authorization code for tokens (client_secret_basic, or _post when that is all the
        provider supports); return the token response, which holds an id_token."""
        meta = self.metadata()
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if "client_secret_basic" in meta.token_auth_methods:
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"  # RFC 6749 2.3.1
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif "client_secret_post" in meta.token_auth_methods:
            data.update(client_id=self.client_id, client_secret=self.client_secret)
        else:
            raise OidcError(
                OidcReason.TOKEN_EXCHANGE_FAILED,
                "The identity provider supports neither client_secret_basic nor client_secret_post",
            )
        try:
            response = self.session.post(meta.token_endpoint, data=data, headers=headers)
        except ConnectorError as exc:
            raise OidcError(
                OidcReason.TOKEN_EXCHANGE_FAILED, f"Cannot reach the token endpoint: {exc}"
            ) from None
        if response.status_code != 200:
            try:
                error = response.json().get("error")
            except (ValueError, AttributeError):
                error = None
            code_text = f" ({str(error)[:60]})" if isinstance(error, str) else ""
            raise OidcError(
                OidcReason.TOKEN_EXCHANGE_FAILED,
                f"The token endpoint {safe_url(meta.token_endpoint)} refused the code: "
                f"HTTP {response.status_code}{code_text}",
            )
        tokens = _json_document(response, "token response", OidcReason.TOKEN_EXCHANGE_FAILED)
        if not isinstance(tokens.get("id_token"), str):
            raise OidcError(OidcReason.TOKEN_EXCHANGE_FAILED, "The token response holds no id_token")
        return tokens

    def _signing_key(self, header: Mapping[str, Any]) -> Any:
        """The JWKS key the token names; fetch the key set once more when the kid is unknown (rotation)."""
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise OidcError(OidcReason.BAD_ALGORITHM, f"The id_token is signed with {str(alg)[:20]!r}")
        kid = header.get("kid")

        def pick(doc: Mapping[str, Any]) -> dict[str, Any] | None:
            candidates = [
                k
                for k in doc.get("keys", [])
                if isinstance(k, dict)
                and k.get("kty") == _KEY_TYPES[alg]
                and k.get("use", "sig") == "sig"
                and (kid is None or k.get("kid") == kid)
            ]
            return candidates[0] if len(candidates) == 1 or (kid is not None and candidates) else None

        found = pick(self.jwks())
        if found is None and self.store.claim(f"jwks-refresh:{self.discovery_url}", JWKS_REFRESH_SECONDS):
            found = pick(self.jwks(refresh=True))
        if found is None:
            raise OidcError(
                OidcReason.UNKNOWN_KEY, "The id_token is signed with a key the provider does not publish"
            )
        try:
            return KeySet.import_key_set({"keys": [found]}).keys[0]
        except (JoseError, ValueError, TypeError):
            raise OidcError(
                OidcReason.JWKS_FAILED, "The provider publishes a key that cannot be read"
            ) from None

    def verify_id_token(
        self, id_token: str, *, nonce: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """Check the id_token's signature and claims; return its claims."""
        if len(id_token) > MAX_TOKEN_BYTES or id_token.count(".") != 2:
            raise OidcError(OidcReason.MALFORMED_TOKEN, "The id_token is not a signed JWT")
        try:
            header = _b64_json(id_token.split(".", 1)[0])
        except (ValueError, UnicodeError):
            raise OidcError(OidcReason.MALFORMED_TOKEN, "The id_token's header cannot be read") from None
        if not isinstance(header, dict):
            raise OidcError(OidcReason.MALFORMED_TOKEN, "The id_token's header is not an object")
        key = self._signing_key(header)
        try:
            token = jwt.decode(id_token, key, algorithms=[header["alg"]])
        except BadSignatureError:
            raise OidcError(OidcReason.BAD_SIGNATURE, "The id_token's signature does not verify") from None
        except (JoseError, ValueError, TypeError):
            raise OidcError(OidcReason.MALFORMED_TOKEN, "The id_token cannot be decoded") from None
        claims = CodeIDToken(
            token.claims,
            token.header,
            options={
                "iss": {"essential": True, "value": self.issuer},
                "aud": {"essential": True, "value": self.client_id},
                "sub": {"essential": True},
            },
            params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
        )
        try:
            claims.validate(leeway=self.leeway)
        except ExpiredTokenError:
            raise OidcError(OidcReason.EXPIRED, "The id_token has expired") from None
        except MissingClaimError as exc:
            raise OidcError(OidcReason.MISSING_CLAIM, f"The id_token lacks the {exc.claim!r} claim") from None
        except InvalidClaimError as exc:
            raise self._claim_error(exc.claim) from None
        if not isinstance(token.claims.get("sub"), str) or not token.claims["sub"]:
            raise OidcError(OidcReason.MISSING_CLAIM, "The id_token has no subject")
        return dict(token.claims)

    @staticmethod
    def _claim_error(claim: str) -> OidcError:
        reasons = {
            "iss": (OidcReason.WRONG_ISSUER, "The id_token comes from another issuer"),
            "aud": (OidcReason.WRONG_AUDIENCE, "The id_token is meant for another client"),
            "azp": (OidcReason.WRONG_AUDIENCE, "The id_token was issued to another client"),
            "nonce": (OidcReason.NONCE_MISMATCH, "The id_token answers another sign-in (nonce)"),
            "at_hash": (OidcReason.AT_HASH_MISMATCH, "The id_token does not match the access token"),
            "nbf": (OidcReason.NOT_YET_VALID, "The id_token is not valid yet"),
            "iat": (OidcReason.NOT_YET_VALID, "The id_token was issued in the future"),
            "exp": (OidcReason.EXPIRED, "The id_token's expiry cannot be read"),
        }
        reason, message = reasons.get(
            claim, (OidcReason.MALFORMED_TOKEN, f"The id_token's {claim!r} is invalid")
        )
        return OidcError(reason, message)

    def complete(self, *, code: str, code_verifier: str, nonce: str) -> dict[str, Any]:
        """Exchange the code and verify the id_token it brings; return the verified claims."""
        tokens = self.exchange_code(code=code, code_verifier=code_verifier)
        access_token = tokens.get("access_token")
        return self.verify_id_token(
            tokens["id_token"],
            nonce=nonce,
            access_token=access_token if isinstance(access_token, str) else None,
        )


def states_equal(expected: str, received: str) -> bool:
    """Compare a returned state with a stored one in constant time."""
    return secrets.compare_digest(expected.encode(), received.encode())
