"""A real OpenID Connect provider on loopback, built on authlib's server classes, for the demo and the tests.

Authorization code flow with PKCE (S256, required) and OpenID Connect (`AuthorizationCodeGrant` +
`OpenIDCode` + `CodeChallenge`): /.well-known/openid-configuration, /authorize (a small HTML login form, so a
browser signs in for real), /token (client_secret_basic or _post), /jwks, /userinfo. RS256 keys rotate:
`rotate_keys()` signs with a new kid and keeps publishing the old one until `retire_keys()`.

Admin endpoints (`POST /__admin/<action>`, JSON): `users` {username, password, email, name, groups, amr,
acr, email_verified} adds or updates a user; `groups` {username, groups}; `amr` {username, amr, acr};
`clients` {client_id, client_secret, redirect_uris}; `rotate_keys`; `retire_keys`; `login` {username}
pre-authenticates the next /authorize (a test without a form); `token_faults` {forged, unknown_key, aud,
expired, issuer, nonce, alg_none} spoils the next id_tokens (`count`, default: until cleared with {}).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    JsonRequest,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo
from authlib.oidc.core.models import AuthorizationCodeMixin
from joserfc.jwk import RSAKey
from requests.structures import CaseInsensitiveDict

from connectors.simulation import SimRequest, SimResponse, Simulator, json_response

SCOPES = ("openid", "email", "profile", "groups")
DEMO_PASSWORD = "idp-Demo!2026"  # noqa: S105 - the demo IdP's users; never a real credential
DEMO_CLIENT_ID = "hub-demo"
DEMO_CLIENT_SECRET = "hub-demo-client-secret-2026"  # noqa: S105 - the demo IdP's registered client
#: The demo users (the README's table): username -> (e-mail domain globex.example), groups, amr.
DEMO_USERS: tuple[dict[str, Any], ...] = (
    {"username": "grace", "name": "Grace Hopper", "groups": ["hub-admins"], "amr": ["pwd", "otp", "mfa"]},
    {"username": "ed", "name": "Ed Editor", "groups": ["hub-editors"], "amr": ["pwd"]},
    {"username": "vera", "name": "Vera Viewer", "groups": ["hub-viewers"], "amr": ["pwd"]},
    {"username": "nobody", "name": "Nora Nobody", "groups": ["marketing"], "amr": ["pwd"]},
)
CODE_TTL = 120
TOKEN_FAULTS = ("forged", "unknown_key", "aud", "expired", "issuer", "nonce", "alg_none")


@dataclass
class IdpUser:
    username: str
    password: str
    email: str
    name: str = ""
    groups: list[str] = field(default_factory=list)
    amr: list[str] = field(default_factory=lambda: ["pwd"])
    acr: str = ""
    email_verified: bool = True
    sub: str = ""  # stable per username (see add_user): a restarted demo IdP keeps its users' subjects


@dataclass
class IdpClient(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, as the spec asks

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class IdpCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    amr: list[str]
    acr: str
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return self.amr


class _Request(OAuth2Request):
    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], query: dict[str, str], form: dict[str, str]
    ):
        super().__init__(method, uri, headers=CaseInsensitiveDict(headers))
        self._args, self._form = query, form
        self.payload = BasicOAuth2Payload({**query, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Grant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: _Server

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        user: IdpUser = request.user
        self.server.sim.codes[code] = IdpCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri") or "",
            scope=request.scope or "",
            username=user.username,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            amr=list(user.amr),
            acr=user.acr,
            auth_time=int(time.time()),
            expires_at=time.time() + CODE_TTL,
        )

    def query_authorization_code(self, code: str, client: IdpClient) -> IdpCode | None:
        found = self.server.sim.codes.get(code)
        if found is None or found.client_id != client.client_id or found.expires_at < time.time():
            return None
        return found

    def delete_authorization_code(self, authorization_code: IdpCode) -> None:
        self.server.sim.codes.pop(authorization_code.code, None)  # a code works once

    def authenticate_user(self, authorization_code: IdpCode) -> IdpUser | None:
        return self.server.sim.users.get(authorization_code.username)


class _OpenIDCode(OpenIDCode):
    def __init__(self, sim: OidcSimulator) -> None:
        super().__init__(require_nonce=True)
        self.sim = sim

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(c.nonce == nonce for c in self.sim.codes.values())

    def resolve_client_private_key(self, client: IdpClient) -> Any:
        faults = self.sim.current_faults
        if "forged" in faults or "unknown_key" in faults:
            return self.sim.attacker_key
        return self.sim.signing_key

    def get_client_algorithm(self, client: IdpClient) -> str:
        return "RS256"

    def get_encode_header(self, client: IdpClient) -> dict[str, str]:
        faults = self.sim.current_faults
        if "unknown_key" in faults:
            return {"alg": "RS256", "kid": str(self.sim.attacker_key.kid)}
        return {"alg": "RS256", "kid": str(self.sim.signing_key.kid)}

    def get_client_claims(self, client: IdpClient) -> dict[str, Any]:
        faults = self.sim.current_faults
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.sim.base_url if "issuer" not in faults else "https://idp.attacker.example",
            "aud": [client.client_id] if "aud" not in faults else ["another-client"],
            "iat": now,
            "exp": now + 300,
        }
        if "expired" in faults:
            claims.update(iat=now - 3600, exp=now - 1800)
        return claims

    def get_authorization_code_claims(self, authorization_code: Any) -> dict[str, Any]:
        claims = super().get_authorization_code_claims(authorization_code)
        if "nonce" in self.sim.current_faults:
            claims["nonce"] = "not-the-nonce-you-sent"
        return claims

    def generate_user_info(self, user: IdpUser, scope: str) -> UserInfo:
        info = UserInfo(sub=user.sub, preferred_username=user.username)
        scopes = scope.split()
        if "email" in scopes:
            info.update(email=user.email, email_verified=user.email_verified)
        if "profile" in scopes:
            given, _, family = user.name.partition(" ")
            info.update(name=user.name, given_name=given, family_name=family)
        info["groups"] = list(user.groups)  # Okta/Keycloak send groups when the client asks; always here
        return info

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        self.sim.current_faults = self.sim.take_token_faults()
        try:
            encoded = super().encode_id_token(token, request)
            if "alg_none" in self.sim.current_faults:  # the same claims, unsigned
                payload = encoded.split(".")[1]
                header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
                encoded = f"{header}.{payload}."
            return encoded
        finally:
            self.sim.current_faults = set()


class _Server(AuthorizationServer):
    def __init__(self, sim: OidcSimulator) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.sim = sim
        self.register_token_generator("default", BearerTokenGenerator(self._access_token))
        self.register_grant(_Grant, [_OpenIDCode(sim), CodeChallenge(required=True)])

    @staticmethod
    def _access_token(**_: Any) -> str:
        return secrets.token_urlsafe(32)

    def query_client(self, client_id: str) -> IdpClient | None:
        return self.sim.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.sim.access_tokens[token["access_token"]] = (request.user.username, time.time() + 3600)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def create_json_request(self, request: Any) -> JsonRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> SimResponse:
        headers = dict(headers or [])
        if isinstance(body, dict):
            response = json_response(status, body)
            response.headers.update({k: v for k, v in headers.items() if k.lower() != "content-type"})
            return response
        return SimResponse(
            status, str(body or "").encode(), headers.pop("Content-Type", "text/plain"), headers
        )

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class OidcSimulator(Simulator):
    """A loopback OpenID Connect provider with demo users, a demo client and attack hooks."""

    vendor = "oidc"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.faults.rate_limit_remaining = 0
        self._lock = threading.Lock()
        self.users: dict[str, IdpUser] = {}
        self.clients: dict[str, IdpClient] = {}
        self.codes: dict[str, IdpCode] = {}
        self.access_tokens: dict[str, tuple[str, float]] = {}
        self.sessions: dict[str, str] = {}  # browser session cookie -> username
        self.pre_authenticated: str | None = None
        self.keys: list[RSAKey] = [self._new_key()]  # keys[0] signs; the others are still published
        self.attacker_key = self._new_key()
        self.token_faults: set[str] = set()
        self.token_faults_remaining: int | None = None
        self.current_faults: set[str] = set()
        self.jwks_fetches = 0  # how often the key set was fetched (tests: the hub's cache and refetch limit)
        self.server = _Server(self)
        for spec in DEMO_USERS:
            self.add_user(**spec, email=f"{spec['username']}@globex.example", password=DEMO_PASSWORD)
        self.add_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, [])
        self.route("GET", r"/\.well-known/openid-configuration", self.discovery)
        self.route("GET", r"/authorize", self.authorize)
        self.route("POST", r"/authorize", self.authorize)
        self.route("POST", r"/token", self.token)
        self.route("GET", r"/jwks", self.jwks)
        self.route("GET", r"/userinfo", self.userinfo)

    @staticmethod
    def _new_key() -> RSAKey:
        return RSAKey.generate_key(
            2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"}
        )

    def is_public(self, request: SimRequest) -> bool:
        return True  # the endpoints authenticate themselves (client secret, bearer token, the login form)

    # --- state (Python API; mirrored by the admin endpoints) -------------------------------------------

    @property
    def signing_key(self) -> RSAKey:
        return self.keys[0]

    def add_user(self, *, username: str, password: str, email: str, **fields: Any) -> IdpUser:
        """Add a user, or update one (the subject stays)."""
        with self._lock:
            current = self.users.get(username)
            if current is None:
                sub = hashlib.sha256(f"oidc-simulator:{username}".encode()).hexdigest()[:24]
                current = IdpUser(username=username, password=password, email=email, sub=sub)
                self.users[username] = current
            current.password, current.email = password, email
            for name, value in fields.items():
                if name in ("name", "groups", "amr", "acr", "email_verified"):
                    setattr(current, name, value)
            return current

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> IdpClient:
        client = IdpClient(client_id, client_secret, list(redirect_uris))
        self.clients[client_id] = client
        return client

    def rotate_keys(self) -> str:
        """Sign with a new key from now on; the old ones stay in the JWKS until `retire_keys`."""
        with self._lock:
            self.keys.insert(0, self._new_key())
            return str(self.signing_key.kid)

    def retire_keys(self) -> None:
        """Stop publishing every key but the signing one (the end of the grace period)."""
        with self._lock:
            del self.keys[1:]

    def spoil_tokens(self, *faults: str, count: int | None = None) -> None:
        """Make the next id_tokens bad in the given ways (see TOKEN_FAULTS); none: clear."""
        unknown = set(faults) - set(TOKEN_FAULTS)
        if unknown:
            raise ValueError(f"unknown token fault(s) {sorted(unknown)}; expected {TOKEN_FAULTS}")
        with self._lock:
            self.token_faults, self.token_faults_remaining = set(faults), count

    def take_token_faults(self) -> set[str]:
        with self._lock:
            if not self.token_faults:
                return set()
            if self.token_faults_remaining is not None:
                if self.token_faults_remaining <= 0:
                    return set()
                self.token_faults_remaining -= 1
            return set(self.token_faults)

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "issuer": self.base_url,
            "discovery_url": self.discovery_url,
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "users": [
                {"username": u["username"], "password": DEMO_PASSWORD, "groups": u["groups"], "amr": u["amr"]}
                for u in DEMO_USERS
            ],
        }

    # --- endpoints --------------------------------------------------------------------------------

    def discovery(self, request: SimRequest) -> SimResponse:
        base = self.base_url
        return json_response(
            200,
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "userinfo_endpoint": f"{base}/userinfo",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": list(SCOPES),
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": ["sub", "email", "email_verified", "name", "groups", "amr", "acr"],
            },
        )

    def jwks(self, request: SimRequest) -> SimResponse:
        with self._lock:
            self.jwks_fetches += 1
            keys = [key.as_dict(private=False) for key in self.keys]
        return json_response(200, {"keys": keys}, **{"Cache-Control": "max-age=300"})

    def _oauth_request(self, request: SimRequest) -> _Request:
        form = request.form() if request.method == "POST" else {}
        query = dict(request.query)
        return _Request(request.method, f"{self.base_url}{request.path}", request.headers, query, form)

    def authorize(self, request: SimRequest) -> SimResponse:
        """Show the login form (GET), check the password (POST), then redirect with a code."""
        oauth = self._oauth_request(request)
        params = {k: v for k, v in oauth.payload.data.items() if k not in ("username", "password")}
        try:
            grant = self.server.get_consent_grant(oauth)
        except OAuth2Error as error:
            if error.redirect_uri:  # the client and redirect URI are known: send the error back there
                return self.server.handle_error_response(oauth, error)
            return self._page(400, "Sign-in request refused", f"<p>{html.escape(error.error)}</p>")
        user = self._signed_in_user(request)
        if user is None and request.method == "POST":
            form = request.form()
            candidate = self.users.get(form.get("username", ""))
            if candidate and hmac.compare_digest(
                candidate.password.encode(), form.get("password", "").encode()
            ):
                user = candidate
            else:
                return self._login_form(params, error="Wrong username or password.")
        if user is None:
            return self._login_form(params)
        response = self.server.create_authorization_response(oauth, grant_user=user, grant=grant)
        cookie = secrets.token_urlsafe(16)
        self.sessions[cookie] = user.username
        response.headers["Set-Cookie"] = f"idp_session={cookie}; Path=/; HttpOnly; SameSite=Lax"
        return response

    def _signed_in_user(self, request: SimRequest) -> IdpUser | None:
        with self._lock:
            if self.pre_authenticated:
                username, self.pre_authenticated = self.pre_authenticated, None
                return self.users.get(username)
        cookies = parse_qs((request.headers.get("cookie") or "").replace("; ", "&"))
        known = self.sessions.get((cookies.get("idp_session") or [""])[0])
        return self.users.get(known) if known else None

    def _login_form(self, params: Mapping[str, str], *, error: str = "") -> SimResponse:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = (
            f'{message}<form method="post" action="/authorize?{html.escape(urlencode(params))}">{hidden}'
            '<label>Username <input name="username" id="username" autocomplete="username" autofocus></label>'
            '<label>Password <input name="password" id="password" type="password" '
            'autocomplete="current-password"></label>'
            '<button type="submit">Sign in</button></form>'
        )
        return self._page(401 if error else 200, "Demo identity provider", body)

    @staticmethod
    def _page(status: int, title: str, body: str) -> SimResponse:
        page = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        return SimResponse(status, page.encode(), "text/html; charset=utf-8")

    def token(self, request: SimRequest) -> SimResponse:
        response: SimResponse = self.server.create_token_response(self._oauth_request(request))
        response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
        return response

    def userinfo(self, request: SimRequest) -> SimResponse:
        auth = request.headers.get("authorization", "")
        entry = (
            self.access_tokens.get(auth.removeprefix("Bearer ").strip())
            if auth.startswith("Bearer ")
            else None
        )
        if entry is None or entry[1] < time.time():
            return json_response(
                401, {"error": "invalid_token"}, **{"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        user = self.users[entry[0]]
        info = _OpenIDCode(self).generate_user_info(user, "openid email profile")
        return json_response(200, dict(info))

    # --- admin --------------------------------------------------------------------------------------

    def admin(self, request: SimRequest) -> SimResponse:
        action = request.path.removeprefix("/__admin/")
        if request.method != "POST" or action not in (
            "users",
            "groups",
            "amr",
            "clients",
            "rotate_keys",
            "retire_keys",
            "login",
            "token_faults",
        ):
            return super().admin(request)
        try:
            body = request.json() if request.body else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return json_response(400, {"error": "the body must be a JSON object"})
        try:
            return json_response(200, self._admin_action(action, body))
        except KeyError as exc:
            return json_response(404, {"error": f"unknown {exc.args[0]!r}"})
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})

    def _admin_action(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if action == "users":
            fields = {k: body[k] for k in ("name", "groups", "amr", "acr", "email_verified") if k in body}
            user = self.add_user(
                username=str(body["username"]),
                password=str(body.get("password") or DEMO_PASSWORD),
                email=str(body["email"]),
                **fields,
            )
            return {"username": user.username, "sub": user.sub}
        if action == "groups":
            self.users[str(body["username"])].groups = [str(g) for g in body.get("groups", [])]
            return {"ok": True}
        if action == "amr":
            user = self.users[str(body["username"])]
            user.amr = [str(v) for v in body.get("amr", [])]
            user.acr = str(body.get("acr") or "")
            return {"ok": True}
        if action == "clients":
            uris = body.get("redirect_uris")
            if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
                raise ValueError("redirect_uris must be a list of URLs")
            self.add_client(str(body["client_id"]), str(body["client_secret"]), uris)
            return {"ok": True}
        if action == "rotate_keys":
            return {"kid": self.rotate_keys()}
        if action == "retire_keys":
            self.retire_keys()
            return {"ok": True}
        if action == "login":
            if str(body["username"]) not in self.users:
                raise KeyError(body["username"])
            self.pre_authenticated = str(body["username"])
            return {"ok": True}
        faults = [k for k in TOKEN_FAULTS if body.get(k)]
        self.spoil_tokens(*faults, count=body.get("count"))
        return {"faults": faults}
