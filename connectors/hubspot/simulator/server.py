"""`HubSpotSimulator`, assembled from the endpoint modules: the demo portal's private-app token and
OAuth app, the route table, the token refresh endpoint, bearer checks (expired vs unknown), the 429
policies (ten-secondly or daily) and the X-HubSpot-RateLimit-* headers on every CRM answer."""

from __future__ import annotations

from typing import Any

from connectors.hubspot.simulator.endpoints_associations import AssociationEndpoints
from connectors.hubspot.simulator.endpoints_batch import BatchEndpoints
from connectors.hubspot.simulator.endpoints_objects import ObjectEndpoints
from connectors.hubspot.simulator.schema import DAILY_LIMIT
from connectors.hubspot.simulator.search import SearchEndpoint
from connectors.hubspot.simulator.tickets import TicketActivity
from connectors.simulation import SimRequest, SimResponse, json_response


class HubSpotSimulator(ObjectEndpoints, BatchEndpoints, SearchEndpoint, AssociationEndpoints, TicketActivity):
    """The demo portal: hubspot-api-client and the hub's connector talk to it as to api.hubapi.com."""

    vendor = "hubspot"
    private_app_token = "pat-na1-11111111-2222-3333-4444-555555555555"  # noqa: S105 - demo portal token
    client_id = "hs-sim-client"
    client_secret = "hs-sim-secret-0001"  # noqa: S105
    refresh_token = "hs-sim-refresh-0001"  # noqa: S105
    payload_keys = ("results",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens.ttl = 1800
        self.daily_used = 0
        self.route("POST", r"/oauth/v1/token", self.oauth)
        self.route("GET", r"/crm/v3/properties/(?P<type>\w+)", self.properties)
        self.route("GET", r"/crm/v3/objects/(?P<type>\w+)", self.list_page)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)", self.create)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)/search", self.search)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)/batch/upsert", self.batch_upsert)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)/batch/read", self.batch_read)
        self.route("POST", r"/crm/v3/objects/(?P<type>contacts)/gdpr-delete", self.gdpr_delete)
        self.route("GET", r"/crm/v3/objects/(?P<type>\w+)/(?P<id>[^/]+)", self.get_object)
        self.route("GET", r"/crm/v3/pipelines/tickets/(?P<id>[^/]+)", self.pipeline)
        self.route(
            "GET", r"/crm/v4/objects/(?P<type>\w+)/(?P<id>\d+)/associations/(?P<to>\w+)", self.associated
        )
        # Calls a typical integration makes beyond sync (see docs/vendors.md, "## HubSpot").
        objects = r"/crm/v3/objects/(?P<type>\w+)"
        self.route("PATCH", objects + r"/(?P<id>[^/]+)", self.update_object)
        self.route("DELETE", objects + r"/(?P<id>[^/]+)", self.archive_object)
        self.route("POST", objects + r"/batch/create", self.batch_create)
        self.route("POST", objects + r"/batch/update", self.batch_update)
        self.route("POST", objects + r"/batch/archive", self.batch_archive)
        self.route("GET", r"/crm/v3/properties/(?P<type>\w+)/(?P<name>\w+)", self.property_one)
        v4 = r"/crm/v4/objects/(?P<type>[\w-]+)/(?P<id>\d+)/associations"
        self.route("PUT", v4 + r"/default/(?P<to>[\w-]+)/(?P<to_id>\d+)", self.link_default)
        self.route("PUT", v4 + r"/(?P<to>[\w-]+)/(?P<to_id>\d+)", self.link_labelled)
        self.route("DELETE", v4 + r"/(?P<to>[\w-]+)/(?P<to_id>\d+)", self.unlink_pair)
        batch = r"/crm/v4/associations/(?P<type>[\w-]+)/(?P<to>[\w-]+)/batch"
        self.route("POST", batch + r"/read", self.associations_batch_read)
        self.route("POST", batch + r"/create", self.associations_batch_create)
        self.route("POST", batch + r"/archive", self.associations_batch_archive)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "private_app_token": self.private_app_token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
        }

    # --- auth, limits, errors ---------------------------------------------------------------------

    def is_public(self, request: SimRequest) -> bool:
        return request.path == "/oauth/v1/token"

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token == self.private_app_token:
            return None
        state = self.tokens.state(token) if scheme.lower() == "bearer" else "unknown"
        if state == "valid":
            return None
        if state == "expired":
            return self._error(
                401,
                "The OAuth token used to make this call expired 0 second(s) ago.",
                "EXPIRED_AUTHENTICATION",
            )
        message = "Authentication credentials not found. This API supports OAuth 2.0 authentication."
        return self._error(401, message, "INVALID_AUTHENTICATION")

    def dispatch(self, request: SimRequest) -> SimResponse:
        response = super().dispatch(request)
        if request.path.startswith("/crm/"):
            self.daily_used += 1
            response.headers.update(
                {
                    "X-HubSpot-RateLimit-Daily": str(DAILY_LIMIT),
                    "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, DAILY_LIMIT - self.daily_used)),
                    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                    "X-HubSpot-RateLimit-Max": "190",
                    "X-HubSpot-RateLimit-Remaining": "189",
                }
            )
        return response

    def rate_limited(self, request: SimRequest) -> SimResponse:
        daily = self.faults.rate_limit_policy.upper() == "DAILY"
        policy = "DAILY" if daily else "TEN_SECONDLY_ROLLING"
        name = "daily" if daily else "ten_secondly_rolling"
        return self._error(
            429,
            f"You have reached your {name} limit.",
            "RATE_LIMITS",
            errorType="RATE_LIMIT",
            policyName=policy,
            links={},
        )

    def oauth(self, request: SimRequest) -> SimResponse:
        form = request.form()
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return self._error(400, "Invalid client credentials", "BAD_CLIENT_ID", error="BAD_CLIENT_ID")
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return self._error(
                400, "missing or unknown refresh token", "BAD_REFRESH_TOKEN", error="BAD_REFRESH_TOKEN"
            )
        token = self.tokens.issue("CJ")
        return json_response(
            200,
            {
                "token_type": "bearer",
                "refresh_token": self.refresh_token,
                "access_token": token,
                "expires_in": int(self.tokens.ttl),
            },
        )
