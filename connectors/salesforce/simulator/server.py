"""`SalesforceSimulator`, assembled from the endpoint modules: the demo org's credentials, the route
table, the OAuth token endpoint (password, client credentials and JWT bearer), the session check and the
daily API limit reported in Sforce-Limit-Info and /limits."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import jwt

from connectors.salesforce.simulator.cases import CaseActivity
from connectors.salesforce.simulator.endpoints_composite import CompositeEndpoints
from connectors.salesforce.simulator.endpoints_sobjects import SObjectEndpoints
from connectors.salesforce.simulator.schema import API, ORG_ID
from connectors.salesforce.simulator.soql import SoqlEndpoints
from connectors.simulation import SimRequest, SimResponse, json_response


class SalesforceSimulator(SoqlEndpoints, SObjectEndpoints, CompositeEndpoints, CaseActivity):
    """The demo org: simple-salesforce and the hub's connector talk to it as to login.salesforce.com."""

    vendor = "salesforce"
    scheme = "https"
    client_id = "3MVG9simulatorCONSUMERKEY"
    client_secret = "sim-consumer-secret-0001"  # noqa: S105 - demo org credential, published on purpose
    username = "integration@hub-demo.sim"
    password = "demo-Passw0rd"  # noqa: S105
    security_token = "SimSecTok123"  # noqa: S105
    payload_keys = ("records",)

    def __init__(self, *, api_limit: int = 5_000_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_limit = api_limit
        self.api_used = 0
        self._usage_lock = threading.Lock()
        self.jwt_key_path, self.jwt_public_key = self._ensure_jwt_key()
        self.route("POST", r"/services/oauth2/token", self.token)
        self.route("GET", r"/services/data/?", self.versions)
        self.route("GET", API + r"/limits/?", self.limits)
        self.route("GET", API + r"/(?P<endpoint>query|queryAll)/?", self.query)
        self.route("GET", API + r"/(?:query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)", self.query_more)
        self.route("GET", API + r"/sobjects/(?P<obj>\w+)/describe/?", self.describe_object)
        self.route("POST", API + r"/sobjects/(?P<obj>\w+)/?", self.create)
        self.route("GET", API + r"/sobjects/(?P<obj>\w+)/(?P<id>\w{15,18})", self.get_record)
        self.route("DELETE", API + r"/sobjects/(?P<obj>\w+)/(?P<id>\w{15,18})", self.delete_record)
        self.route("PATCH", API + r"/sobjects/(?P<obj>\w+)/(?P<field>\w+)/(?P<value>[^/]+)", self.upsert_one)
        self.route("PATCH", API + r"/composite/sobjects/(?P<obj>\w+)/(?P<field>\w+)", self.upsert_many)
        # Calls a typical integration makes beyond sync (see docs/vendors.md, "## Salesforce").
        self.route("GET", API + r"/sobjects/?", self.describe_global)
        self.route("GET", API + r"/sobjects/(?P<obj>\w+)/(?P<which>updated|deleted)/?", self.changed_ids)
        self.route("PATCH", API + r"/sobjects/(?P<obj>\w+)/(?P<id>\w{15,18})", self.update_record)
        self.route(
            "GET", API + r"/sobjects/(?P<obj>\w+)/(?P<field>\w+)/(?P<value>[^/]+)", self.get_by_external_id
        )
        self.route("POST", API + r"/composite/?", self.composite)
        self.route("POST", API + r"/composite/sobjects/?", self.collection_create)
        self.route("PATCH", API + r"/composite/sobjects/?", self.collection_update)
        self.route("DELETE", API + r"/composite/sobjects/?", self.collection_delete)
        self.route("GET", API + r"/composite/sobjects/(?P<obj>\w+)/?", self.collection_get)

    def _ensure_jwt_key(self) -> tuple[Path, Any]:
        """An RSA key pair for the JWT bearer flow: the demo client signs with the private half."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        path = self.state_dir / "tls" / "salesforce-jwt.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return path, loaded.public_key()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "login_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "username": self.username,
            "password": self.password,
            "security_token": self.security_token,
            "jwt_private_key_path": str(self.jwt_key_path),
            "api_version": "59.0",
            "organization_id": ORG_ID,
        }

    # --- auth, limits, errors ----------------------------------------------------------------------

    def is_public(self, request: SimRequest) -> bool:
        return request.path == "/services/oauth2/token" or request.path.rstrip("/") == "/services/data"

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or self.tokens.state(token) != "valid":
            return self._errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        with self._usage_lock:
            self.api_used += 1
            over = self.api_used > self.api_limit
        if over:
            return self.rate_limited(request)
        return None

    def dispatch(self, request: SimRequest) -> SimResponse:
        response = super().dispatch(request)
        if request.path.startswith("/services/data/v"):
            response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.api_limit}"
        return response

    def token(self, request: SimRequest) -> SimResponse:
        form = request.form()
        grant = form.get("grant_type", "")

        def oauth_error(error: str, description: str) -> SimResponse:
            return json_response(400, {"error": error, "error_description": description})

        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                claims = jwt.decode(
                    form.get("assertion", ""),
                    self.jwt_public_key,
                    algorithms=["RS256"],
                    audience=self.base_url,
                )
            except jwt.PyJWTError as exc:
                return oauth_error("invalid_grant", f"invalid assertion: {exc}")
            if claims.get("iss") != self.client_id:
                return oauth_error("invalid_client_id", "client identifier invalid")
            if claims.get("sub") != self.username:
                return oauth_error("invalid_grant", "user hasn't approved this consumer")
        else:
            if form.get("client_id") != self.client_id:
                return oauth_error("invalid_client_id", "client identifier invalid")
            if form.get("client_secret") != self.client_secret:
                return oauth_error("invalid_client", "invalid client credentials")
            if grant == "password":
                if form.get("username") != self.username or form.get("password") != (
                    self.password + self.security_token
                ):
                    return oauth_error("invalid_grant", "authentication failure")
            elif grant != "client_credentials":
                return oauth_error("unsupported_grant_type", "grant type not supported")
        token = self.tokens.issue(ORG_ID[:15] + "!")
        return json_response(
            200,
            {
                "access_token": token,
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/{ORG_ID}/005Hb0000000001AAA",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": "c2ltdWxhdG9y",
            },
        )

    def versions(self, request: SimRequest) -> SimResponse:
        return json_response(200, [{"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}])

    def limits(self, request: SimRequest) -> SimResponse:
        remaining = max(0, self.api_limit - self.api_used)
        return json_response(200, {"DailyApiRequests": {"Max": self.api_limit, "Remaining": remaining}})
