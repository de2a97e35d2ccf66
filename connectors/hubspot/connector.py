"""HubSpot CRM v3 over plain HTTP (the official client retries nothing and hides headers we need):
incremental search restarted at the 10,000-result cap; batch upsert by idProperty, 207 errors per record."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from connectors.base import ConfigField, Cursor, HttpConnector, Record, Stream, WriteOutcome, WriteResult, utc
from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited, VendorUnavailable
from connectors.http import HttpSession, hubspot_limit, hubspot_quota

OBJECTS: dict[str, tuple[str, bool]] = {  # stream -> (object type, writable)
    "contacts": ("contacts", True),
    "accounts": ("companies", True),
    "tickets": ("tickets", True),
    "orders": ("orders", False),
    "leads": ("leads", True),
}
BATCH = 100


def modified_property(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


class HubSpotConnector(HttpConnector):
    kind = "hubspot"
    label = "HubSpot"
    config_schema = (
        ConfigField("base_url", "API base URL", default="https://api.hubapi.com", url=True),
        ConfigField("auth", "Auth", default="private_app", choices=("private_app", "oauth")),
        ConfigField("access_token", "Private app token", secret=True),
        ConfigField("client_id", "OAuth client id"),
        ConfigField("client_secret", "OAuth client secret", secret=True),
        ConfigField("refresh_token", "OAuth refresh token", secret=True),
        ConfigField("page_size", "Search page size (max 200)", default=200),
        ConfigField("id_property", "Unique property for upserts", default="hub_external_id"),
        ConfigField("search_cap", "Results one search can page through", default=10_000),
    )
    sensitive_fields = ("access_token", "client_secret", "refresh_token")
    default_field_map = {
        "contacts": {"first_name": "firstname", "last_name": "lastname", "email": "email", "phone": "phone",
                     "country": "country", "locale": "hs_language", "company": "company"},
        "accounts": {"name": "name", "website": "domain", "country": "country", "industry": "industry"},
        "tickets": {"subject": "subject", "description": "content", "status": "hs_pipeline_stage",
                    "priority": "hs_ticket_priority"},
        "orders": {"number": "hs_order_name", "status": "hs_pipeline_stage", "amount": "hs_total_price",
                   "currency": "hs_currency_code"},
        "leads": {"name": "hs_lead_name", "first_name": "firstname", "last_name": "lastname",
                  "email": "email", "company": "company"},
    }  # fmt: skip

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        super().__init__(config, session=session)
        self.base_url = str(self.config["base_url"]).rstrip("/")
        self.uses_tokens = self.config["auth"] == "oauth"
        if not self.uses_tokens and not self.config["access_token"]:
            raise InvalidConfig("hubspot: a private app token is required")
        if self.uses_tokens and not (self.config["client_id"] and self.config["refresh_token"]):
            raise InvalidConfig("hubspot: OAuth needs client_id, client_secret and refresh_token")
        self.session.quota_parser = hubspot_quota
        self._access: str | None = None
        self._expires_at = 0.0

    def auth_headers(self, *, refresh: bool) -> dict[str, str]:
        if not self.uses_tokens:
            return {"Authorization": f"Bearer {self.config['access_token']}"}
        if refresh or self._access is None or time.monotonic() >= self._expires_at:
            self._refresh()
        return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self) -> None:
        """Refresh ahead of expiry from `expires_in` (HubSpot asks clients not to wait for the 401)."""
        cfg = self.config
        response = self.session.post(
            self.base_url + "/oauth/v1/token",
            data={"grant_type": "refresh_token", "client_id": cfg["client_id"],
                  "client_secret": cfg["client_secret"], "refresh_token": cfg["refresh_token"]},
        )  # fmt: skip
        if response.status_code >= 500:
            raise VendorUnavailable(f"HubSpot OAuth failed with HTTP {response.status_code}")
        if response.status_code != 200:
            raise AuthFailed(self._message(response), status=response.status_code)
        body = self.json(response)
        with self.expecting("the OAuth token request"):
            self._access = str(body["access_token"])
            self.session.add_secret(self._access)
            self._expires_at = time.monotonic() + float(body.get("expires_in", 1800)) - 60

    def rate_limit(self, response: requests.Response) -> RateLimited | None:
        return hubspot_limit(response)

    def error_text(self, response: requests.Response) -> str:
        body = response.json()
        return f"{body.get('category', 'ERROR')}: {body['message']} [HTTP {response.status_code}]"

    # --- interface --------------------------------------------------------------------------------

    def check_connection(self) -> None:
        """Fetch each object's property list and reject field-map entries the portal does not have."""
        for stream in self.streams():
            what = f"the {stream.vendor_object} property list"
            response = self.request("GET", f"/crm/v3/properties/{stream.vendor_object}")
            with self.expecting(what):
                known = {p["name"] for p in self.rows(self.json(response), "results", what)}
            missing = sorted(set(self.field_map[stream.name].values()) - known)
            if missing:
                raise InvalidConfig(f"HubSpot {stream.vendor_object} has no property {', '.join(missing)}")

    def streams(self) -> list[Stream]:
        return [Stream(name, obj, writable=writable) for name, (obj, writable) in OBJECTS.items()]

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        """Search ascending by last-modified; at the search cap, start a new search from the last value."""
        object_type = self.stream(stream).vendor_object
        prop = modified_property(object_type)
        seen = cursor or Cursor()
        since_ms = int(seen.value.timestamp() * 1000) if seen.value else 0
        limit, cap = int(self.config["page_size"]), int(self.config["search_cap"])
        properties = list(dict.fromkeys([prop, *self.field_map[stream].values()]))
        after: str | None = None
        while True:
            query: dict[str, Any] = {
                "filterGroups": [
                    {"filters": [{"propertyName": prop, "operator": "GTE", "value": str(since_ms)}]}
                ],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "properties": properties,
                "limit": limit,
            }
            if after:
                query["after"] = after
            page = self.json(self.request("POST", f"/crm/v3/objects/{object_type}/search", json=query))
            what = f"the {object_type} search"
            with self.expecting(what):
                records = [self._record(stream, raw) for raw in self.rows(page, "results", what)]
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if after is not None:
                    after = str(int(after))
            for record in records:
                if not seen.covers(record):
                    yield record
                    seen = seen.advance(record)
            if not after:
                return
            if int(after) + limit > cap:
                assert seen.value is not None
                restart = int(seen.value.timestamp() * 1000)
                if restart == since_ms:
                    raise ConnectorError(f"HubSpot: more than {cap} {object_type} share one timestamp", True)
                since_ms, after = restart, None

    def _record(self, stream: str, raw: dict[str, Any]) -> Record:
        updated = datetime.fromisoformat(raw["updatedAt"].replace("Z", "+00:00")).astimezone(UTC)
        props = raw.get("properties") or {}
        return Record(str(raw["id"]), utc(updated), self.to_canonical(stream, props), raw,
                      deleted=bool(raw.get("archived")))  # fmt: skip

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        object_type = self.stream(stream, for_write=True).vendor_object
        id_property = str(self.config["id_property"])
        result = WriteResult()
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            inputs: list[dict[str, Any]] = [
                {
                    "idProperty": id_property,
                    "id": str(r["external_id"]),
                    "properties": self.to_vendor(stream, r["fields"]),
                }
                for r in batch
            ]
            response = self.request(
                "POST", f"/crm/v3/objects/{object_type}/batch/upsert", json={"inputs": inputs}
            )
            body = self.json(response)
            what = f"the {object_type} batch upsert"
            with self.expecting(what):
                done = {str(r["properties"].get(id_property)): r for r in self.rows(body, "results", what)}
                failed = {
                    str(i): str(e["message"])
                    for e in body.get("errors", [])
                    for i in e.get("context", {}).get("ids", [])
                }
            for record in batch:
                ext = str(record["external_id"])
                if ext in done:
                    with self.expecting(what):
                        vendor_id, created = str(done[ext]["id"]), bool(done[ext].get("new"))
                    result.outcomes.append(WriteOutcome(ext, vendor_id, created=created))
                else:
                    result.outcomes.append(
                        WriteOutcome(ext, error=failed.get(ext, "HubSpot returned no result"))
                    )
        return result
