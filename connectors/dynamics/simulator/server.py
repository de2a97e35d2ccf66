"""`DynamicsSimulator`, assembled from the endpoint modules: the demo app registration, the route table,
the Entra ID side (tenant OpenID configuration, client credentials token endpoint with AADSTS errors), the
bearer check with its WWW-Authenticate challenge, service protection around every Web API call, WhoAmI,
and the admin extras (delta token expiry, service protection limits)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from connectors.dynamics.simulator.batch import BatchEndpoint
from connectors.dynamics.simulator.limits import LIMIT_CODES
from connectors.dynamics.simulator.query import QueryEndpoints
from connectors.dynamics.simulator.schema import API
from connectors.dynamics.simulator.tickets import CaseActivity
from connectors.simulation import SimRequest, SimResponse, json_response


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


class DynamicsSimulator(QueryEndpoints, BatchEndpoint, CaseActivity):
    """The demo org: MSAL and the hub's connector talk to it as to login.microsoftonline.com and Dataverse."""

    vendor = "dynamics365"
    scheme = "https"
    tenant_id = "4d1c8a52-7f3e-4b6a-9c21-0e5d6f7a8b9c"
    client_id = "b7e3f0a1-2c4d-4e6f-8a9b-0c1d2e3f4a5b"
    client_secret = "dyn~sim~client~secret~0001"  # noqa: S105 - the demo app registration's secret
    payload_keys = ("value", "contactid", "accountid", "incidentid", "leadid", "salesorderid", "UserId")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens.ttl = 3599
        self.token_requests = 0
        self.route("GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", self.tenant_metadata)
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token_endpoint)
        self.route("GET", rf"{API}/WhoAmI", self.who_am_i)
        self.route("POST", rf"{API}/\$batch", self.batch)
        self.route(
            "POST", rf"{API}/queues\((?P<key>[^/]+)\)/Microsoft\.Dynamics\.CRM\.AddToQueue", self.add_to_queue
        )
        self.route("GET", rf"{API}/(?P<set>\w+)", self.list_rows)
        self.route("GET", rf"{API}/(?P<set>\w+)\((?P<key>[^/]+)\)", self.get_row)
        self.route("POST", rf"{API}/(?P<set>\w+)", self.create_row)
        self.route("PATCH", rf"{API}/(?P<set>\w+)\((?P<key>[^/]+)\)", self.upsert_row)
        self.route("DELETE", rf"{API}/(?P<set>\w+)\((?P<key>[^/]+)\)", self.delete_row)

    def inject(self, **spec: Any) -> None:
        """Besides `Simulator.inject`: service_protection={requests, execution_ms, concurrent, window}."""
        if "service_protection" in spec:
            self.protection.configure(**(spec.pop("service_protection") or {}))
        super().inject(**spec)

    def clear_faults(self) -> None:
        super().clear_faults()
        self.protection.configure()
        self.untracked.clear()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "org_url": self.base_url,
            "authority_host": self.base_url,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    def admin(self, request: SimRequest) -> SimResponse:
        if request.path == "/__admin/expire_delta" and request.method == "POST":
            self.expire_delta_tokens()
            return json_response(200, {"ok": True})
        return super().admin(request)

    def is_public(self, request: SimRequest) -> bool:
        return not request.path.startswith(API)

    def tenant_metadata(self, request: SimRequest) -> SimResponse:
        """The tenant's OpenID configuration: MSAL reads the token endpoint from it."""
        assert request.match is not None
        base = f"{self.base_url}/{request.match.group('tenant')}"
        return json_response(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"https://login.microsoftonline.com/{self.tenant_id}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        })  # fmt: skip

    def token_endpoint(self, request: SimRequest) -> SimResponse:
        """Client credentials with Entra ID's AADSTS errors; the scope must be this org's `/.default`."""
        self.token_requests += 1
        assert request.match is not None
        form = request.form()
        if request.match.group("tenant") not in (self.tenant_id, "contoso.onmicrosoft.com"):
            return self._aad_error(400, "invalid_request",
                                   "AADSTS90002: Tenant not found. Check the tenant id.")  # fmt: skip
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", "AADSTS70003: unsupported grant type")
        if form.get("client_id") != self.client_id:
            return self._aad_error(
                400,
                "unauthorized_client",
                "AADSTS700016: Application with identifier "
                f"'{form.get('client_id', '')[:40]}' was not found in the directory.",
            )
        if form.get("client_secret") != self.client_secret:
            return self._aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("scope") != f"{self.base_url}/.default":
            return self._aad_error(400, "invalid_scope", "AADSTS70011: The provided value for scope "
                                   f"{form.get('scope', '')[:80]} is not valid.")  # fmt: skip
        ttl = int(self.tokens.ttl)
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": "sim"}
        claims = {"aud": self.base_url, "iss": f"https://sts.windows.net/{self.tenant_id}/", "iat": now,
                  "nbf": now, "exp": now + ttl, "appid": self.client_id, "tid": self.tenant_id}  # fmt: skip
        token = self.tokens.issue(f"{_b64(header)}.{_b64(claims)}.", ttl=ttl)
        return json_response(200, {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl,
                                   "access_token": token})  # fmt: skip

    @staticmethod
    def _aad_error(status: int, error: str, description: str) -> SimResponse:
        trace = str(uuid.uuid4())
        return json_response(status, {
            "error": error, "error_description": f"{description} Trace ID: {trace}",
            "error_codes": [int(description[6:].split(":")[0])], "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        })  # fmt: skip

    def dispatch(self, request: SimRequest) -> SimResponse:
        if request.path.startswith(API) and not request.path.startswith("/__admin/"):
            refused = self.protection.enter()
            if refused is not None:
                return self._limit_response(*refused)
            started = time.monotonic()
            try:
                return super().dispatch(request)
            finally:
                self.protection.leave(started)
        return super().dispatch(request)

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.tokens.state(token) == "valid":
            return None
        challenge = (f"Bearer authorization_uri=https://login.microsoftonline.com/{self.tenant_id}"
                     f"/oauth2/authorize, resource_id={self.base_url}/")  # fmt: skip
        return SimResponse(401, b"", headers={"WWW-Authenticate": challenge})

    def rate_limited(self, request: SimRequest) -> SimResponse:
        policy = self.faults.rate_limit_policy if self.faults.rate_limit_policy in LIMIT_CODES else "requests"
        return self._limit_response(policy, float(self.faults.rate_limit_retry_after))

    def who_am_i(self, request: SimRequest) -> SimResponse:
        return json_response(200, {
            "@odata.context": f"{self.base_url}{API}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": str(uuid.uuid5(uuid.NAMESPACE_URL, "bu")),
            "UserId": self.app_user_id,
            "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_URL, "org")),
        })  # fmt: skip
