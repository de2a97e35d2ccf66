"""ServiceNow Table API over plain HTTP: keyset paging on (sys_updated_on, sys_id), incidents upserted
through a correlation id (the API has no native upsert)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from connectors.base import (
    ConfigField,
    Cursor,
    HttpConnector,
    Record,
    Stream,
    WriteOutcome,
    WriteResult,
)
from connectors.errors import AuthFailed, ConnectorError, RateLimited, VendorUnavailable
from connectors.http import HttpSession, servicenow_limit

TABLES: dict[str, tuple[str, bool]] = {  # stream -> (table, writable)
    "contacts": ("customer_contact", False),
    "accounts": ("customer_account", False),
    "tickets": ("incident", True),
    "orders": ("sc_request", False),
    "articles": ("kb_knowledge", False),
}
FORMAT = "%Y-%m-%d %H:%M:%S"
SAFE_VALUE = re.compile(r"^[^\^,]*$")  # encoded-query metacharacters must not appear in ids we filter on
LOOKUP_BATCH = 100


class ServiceNowConnector(HttpConnector):
    kind = "servicenow"
    label = "ServiceNow"
    config_schema = (
        ConfigField("instance_url", "Instance URL", required=True, url=True),
        ConfigField("auth", "Auth", default="basic", choices=("basic", "oauth")),
        ConfigField("username", "User", required=True),
        ConfigField("password", "Password", required=True, secret=True),
        ConfigField("client_id", "OAuth client id"),
        ConfigField("client_secret", "OAuth client secret", secret=True),
        ConfigField("page_size", "Rows per page", default=1000),
        ConfigField("correlation_field", "Correlation field for upserts", default="correlation_id"),
    )
    sensitive_fields = ("password", "client_secret")
    default_field_map = {
        "contacts": {"first_name": "first_name", "last_name": "last_name", "email": "email", "phone": "phone",
                     "country": "country", "locale": "preferred_language", "account_id": "account"},
        "accounts": {"name": "name", "website": "website", "country": "country", "industry": "industry"},
        "tickets": {"subject": "short_description", "description": "description", "status": "state",
                    "priority": "priority", "contact_id": "caller_id"},
        "orders": {"number": "number", "status": "request_state", "amount": "price", "currency": "currency"},
        "articles": {"title": "short_description", "body": "text", "locale": "language",
                     "state": "workflow_state", "knowledge_base": "kb_knowledge_base"},
    }  # fmt: skip

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        super().__init__(config, session=session)
        self.base_url = str(self.config["instance_url"]).rstrip("/")
        self.uses_tokens = self.config["auth"] == "oauth"
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0

    # --- auth -------------------------------------------------------------------------------------

    def auth_headers(self, *, refresh: bool) -> dict[str, str]:
        if not self.uses_tokens:
            return {
                "Authorization": requests.auth._basic_auth_str(
                    self.config["username"], self.config["password"]
                )
            }
        if refresh or self._access is None or time.monotonic() >= self._expires_at:
            self._login()
        return {"Authorization": f"Bearer {self._access}"}

    def _login(self) -> None:
        """Refresh with the refresh token when we have one, else the password grant; 30 s safety margin."""
        cfg = self.config
        form = {"client_id": cfg["client_id"], "client_secret": cfg["client_secret"]}
        if self._refresh:
            form |= {"grant_type": "refresh_token", "refresh_token": self._refresh}
        else:
            form |= {"grant_type": "password", "username": cfg["username"], "password": cfg["password"]}
        response = self.session.post(self.base_url + "/oauth_token.do", data=form)
        if response.status_code >= 500:
            raise VendorUnavailable(f"ServiceNow OAuth failed with HTTP {response.status_code}")
        if response.status_code != 200:
            if self._refresh:  # refresh token revoked or expired: fall back to the password grant once
                self._refresh = None
                return self._login()
            raise AuthFailed(
                "ServiceNow OAuth refused the credentials (access_denied)", status=response.status_code
            )
        body = self.json(response)
        with self.expecting("the OAuth token request"):
            self._access, self._refresh = str(body["access_token"]), body.get("refresh_token")
            self.session.add_secret(self._access)
            self._expires_at = time.monotonic() + float(body.get("expires_in", 1800)) - 30
        if self._refresh:
            self.session.add_secret(str(self._refresh))
        return None

    def rate_limit(self, response: requests.Response) -> RateLimited | None:
        return servicenow_limit(response)

    def error_text(self, response: requests.Response) -> str:
        error = response.json()["error"]
        return f"{error['message']} ({error.get('detail') or 'no detail'}) [HTTP {response.status_code}]"

    # --- interface --------------------------------------------------------------------------------

    def check_connection(self) -> None:
        for stream in self.streams():
            table = stream.vendor_object
            response = self.request("GET", f"/api/now/table/{table}", params={"sysparm_limit": 1})
            self.rows(self.json(response), "result", f"the {table} table")

    def streams(self) -> list[Stream]:
        return [Stream(name, table, writable=writable) for name, (table, writable) in TABLES.items()]

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        table = self.stream(stream).vendor_object
        cursor = cursor or Cursor()
        fields = ",".join(dict.fromkeys(["sys_id", "sys_updated_on", *self.field_map[stream].values()]))
        order = "^ORDERBYsys_updated_on^ORDERBYsys_id"
        query = f"sys_updated_on>={cursor.value:{FORMAT}}{order}" if cursor.value else order.lstrip("^")
        while True:
            response = self.request(
                "GET",
                f"/api/now/table/{table}",
                params={"sysparm_query": query, "sysparm_limit": int(self.config["page_size"]),
                        "sysparm_fields": fields, "sysparm_exclude_reference_link": "true"},
            )  # fmt: skip
            what = f"the {table} table"
            rows = self.rows(self.json(response), "result", what)
            with self.expecting(what):
                records = [self._record(stream, raw) for raw in rows]
            for record in records:
                if not cursor.covers(record):
                    yield record
            if not rows or "next" not in response.links:
                return
            # Keyset, not offset: rows changing mid-read must not shift later pages.
            last_ts, last_id = rows[-1]["sys_updated_on"], rows[-1]["sys_id"]
            query = f"sys_updated_on>{last_ts}^NQsys_updated_on={last_ts}^sys_id>{last_id}{order}"

    def _record(self, stream: str, raw: dict[str, Any]) -> Record:
        value = raw["sys_updated_on"]
        if len(value) != 19:  # "YYYY-MM-DD HH:MM:SS" in UTC; fromisoformat alone would accept more
            raise ValueError(f"sys_updated_on is not 'YYYY-MM-DD HH:MM:SS': {value!r}")
        updated = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return Record(raw["sys_id"], updated, self.to_canonical(stream, raw), raw)

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        table = self.stream(stream, for_write=True).vendor_object
        corr = str(self.config["correlation_field"])
        result = WriteResult()
        for start in range(0, len(records), LOOKUP_BATCH):
            batch = records[start : start + LOOKUP_BATCH]
            ids = [str(r["external_id"]) for r in batch]
            if not all(SAFE_VALUE.match(i) for i in ids):
                raise ConnectorError("ServiceNow: external ids must not contain '^' or ','", permanent=True)
            params = {"sysparm_query": f"{corr}IN{','.join(ids)}", "sysparm_fields": f"sys_id,{corr}"}
            what = f"the {table} lookup by {corr}"
            found = self.rows(self.json(self.request("GET", f"/api/now/table/{table}", params=params)),
                              "result", what)  # fmt: skip
            with self.expecting(what):
                existing = {str(row[corr]): str(row["sys_id"]) for row in found}
            for record, ext in zip(batch, ids, strict=True):
                body = {**self.to_vendor(stream, record["fields"]), corr: ext}
                if ext in existing:
                    self.request("PATCH", f"/api/now/table/{table}/{existing[ext]}", json=body)
                    result.outcomes.append(WriteOutcome(ext, existing[ext], created=False))
                else:
                    answer = self.json(self.request("POST", f"/api/now/table/{table}", json=body))
                    with self.expecting(f"the {table} insert"):
                        sys_id = str(answer["result"]["sys_id"])
                    result.outcomes.append(WriteOutcome(ext, sys_id, created=True))
        return result
