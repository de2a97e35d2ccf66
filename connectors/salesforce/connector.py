"""Salesforce via simple-salesforce: we run the OAuth token request ourselves (any login host), then hand
the session to simple-salesforce for SOQL paging and sObject Collections upserts."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import jwt
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from connectors.base import ConfigField, Connector, Cursor, Record, Stream, WriteOutcome, WriteResult, utc
from connectors.errors import (
    AuthExpired,
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import json_or_none, salesforce_quota

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # SOQL is built from these names; nothing else passes
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BATCH = 200  # sObject Collections limit
OBJECTS: dict[str, tuple[str, bool]] = {  # stream -> (sObject, writable)
    "contacts": ("Contact", True),
    "accounts": ("Account", True),
    "tickets": ("Case", True),
    "orders": ("Order", False),
    "articles": ("Knowledge__kav", False),
    "leads": ("Lead", True),
}


class SalesforceConnector(Connector):
    kind = "salesforce"
    label = "Salesforce"
    config_schema = (
        ConfigField("login_url", "Login URL (My Domain for client credentials)", required=True, url=True),
        ConfigField("auth", "Auth flow", default="client_credentials",
                    choices=("client_credentials", "jwt_bearer", "password")),
        ConfigField("client_id", "Consumer key", required=True),
        ConfigField("client_secret", "Consumer secret", secret=True),
        ConfigField("username", "Username (JWT and password flows)"),
        ConfigField("password", "Password (password flow)", secret=True),
        ConfigField("security_token", "Security token (password flow)", secret=True),
        ConfigField("private_key", "JWT signing key, PEM (JWT flow)", secret=True),
        ConfigField("api_version", "API version", default="59.0"),
        ConfigField("external_id_field", "External id field for upserts", default="Ext_Id__c"),
        ConfigField("page_size", "Query batch size (200-2000)", default=2000),
        ConfigField("include_deleted", "Read deletions with queryAll", default=True),
    )  # fmt: skip
    sensitive_fields = ("client_secret", "password", "security_token", "private_key")
    default_field_map = {
        "contacts": {"first_name": "FirstName", "last_name": "LastName", "email": "Email", "phone": "Phone",
                     "country": "MailingCountry", "locale": "Locale__c", "account_id": "AccountId"},
        "accounts": {"name": "Name", "website": "Website", "country": "BillingCountry",
                     "industry": "Industry"},
        "tickets": {"subject": "Subject", "description": "Description", "status": "Status",
                    "priority": "Priority", "contact_id": "ContactId", "locale": "Language__c"},
        "orders": {"number": "OrderNumber", "status": "Status", "amount": "TotalAmount",
                   "currency": "CurrencyIsoCode", "account_id": "AccountId"},
        "articles": {"title": "Title", "body": "Body__c", "locale": "Language", "url_name": "UrlName"},
        "leads": {"first_name": "FirstName", "last_name": "LastName", "email": "Email", "company": "Company",
                  "source": "LeadSource"},
    }  # fmt: skip

    def __init__(self, config: Mapping[str, Any], *, session: Any) -> None:
        super().__init__(config, session=session)
        self.session.quota_parser = salesforce_quota
        self._sf: Salesforce | None = None
        for fields in self.field_map.values():
            bad = [f for f in fields.values() if not IDENTIFIER.match(f)]
            if bad:
                raise InvalidConfig(f"salesforce: field_map value(s) {', '.join(bad)} are not field names")
        if self.config["auth"] == "password":
            self.warnings.append(
                "The OAuth username-password flow is retired by Salesforce on 2027-02-20; "
                "switch this connection to JWT bearer or client credentials."
            )

    # --- auth -------------------------------------------------------------------------------------

    def _token_request(self) -> dict[str, str]:
        cfg = self.config
        login = str(cfg["login_url"]).rstrip("/")
        if cfg["auth"] == "jwt_bearer":
            if not cfg["private_key"] or not cfg["username"]:
                raise InvalidConfig("salesforce: JWT bearer needs username and private_key")
            claims = {"iss": cfg["client_id"], "sub": cfg["username"], "aud": login,
                      "exp": int(time.time()) + 180}  # fmt: skip
            return {
                "grant_type": JWT_GRANT,
                "assertion": jwt.encode(claims, cfg["private_key"], algorithm="RS256"),
            }
        data = {
            "grant_type": cfg["auth"],
            "client_id": cfg["client_id"],
            "client_secret": cfg["client_secret"],
        }
        if cfg["auth"] == "password":
            if not cfg["username"] or not cfg["password"]:
                raise InvalidConfig("salesforce: the password flow needs username and password")
            data |= {"username": cfg["username"], "password": cfg["password"] + (cfg["security_token"] or "")}
        return data

    def _login(self) -> Salesforce:
        url = str(self.config["login_url"]).rstrip("/") + "/services/oauth2/token"
        response = self.session.post(url, data=self._token_request())
        body = json_or_none(response)
        if response.status_code >= 500 or (response.status_code == 200 and not isinstance(body, dict)):
            raise VendorUnavailable(
                f"Salesforce login failed with HTTP {response.status_code}"
                + ("" if response.status_code >= 500 else ": the token answer is not a JSON object")
            )
        body = body if isinstance(body, dict) else {}
        if response.status_code != 200 or "access_token" not in body:
            description = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
            raise AuthFailed(self.session.redact(f"Salesforce login refused: {description}"),
                             status=response.status_code, code=body.get("error"))  # fmt: skip
        with self.expecting("the OAuth token request"):
            access_token, instance_url = str(body["access_token"]), str(body["instance_url"])
        self.session.add_secret(access_token)
        self._sf = Salesforce(
            instance_url=instance_url,
            session_id=access_token,
            session=self.session,
            version=str(self.config["api_version"]),
        )
        return self._sf

    def client(self) -> Salesforce:
        """Return a logged-in simple-salesforce client sharing this connector's session."""
        return self._sf or self._login()

    def _call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run one simple-salesforce method; re-authenticate once on INVALID_SESSION_ID, map errors."""
        sf = self._sf or self._login()
        try:
            try:
                return getattr(sf, name)(*args, **kwargs)
            except SalesforceExpiredSession:
                sf = self._login()
                try:
                    return getattr(sf, name)(*args, **kwargs)
                except SalesforceExpiredSession as exc:
                    raise AuthExpired(
                        "Salesforce session expired again right after re-login", status=401
                    ) from exc
        except SalesforceError as exc:
            raise self._map_error(exc) from exc
        except ValueError as exc:  # simple-salesforce decodes bodies itself: cut off, or an HTML page
            raise VendorUnavailable(
                f"Salesforce returned malformed JSON for {name}: the answer was cut off or is not JSON"
            ) from exc

    def _map_error(self, exc: SalesforceError) -> ConnectorError:
        content = exc.content
        first: dict[str, Any] = (
            content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
        )
        code, message = first.get("errorCode"), first.get("message") or str(content)[:200]
        text = self.session.redact(f"Salesforce {code or exc.status}: {message}")
        if isinstance(exc, SalesforceRefusedRequest) and code == "REQUEST_LIMIT_EXCEEDED":
            return RateLimited(text, retry_after=3600.0, scope="daily", status=403, code=code)
        if exc.status >= 500:
            return VendorUnavailable(text, status=exc.status, code=code)
        if isinstance(exc, SalesforceMalformedRequest) and code in ("INVALID_FIELD", "INVALID_TYPE"):
            return InvalidConfig(text, status=exc.status, code=code)
        return ConnectorError(text, permanent=True, status=exc.status, code=code)

    # --- interface --------------------------------------------------------------------------------

    def check_connection(self) -> None:
        """Log in and run a one-row query per stream, which also validates the field map's columns."""
        self._login()
        for stream in self.streams():
            fields = ", ".join(self._select(stream.name))
            soql = f"SELECT {fields} FROM {stream.vendor_object} LIMIT 1"  # noqa: S608 - names checked
            self.rows(self._call("query", soql), "records", f"the {stream.vendor_object} query")

    def streams(self) -> list[Stream]:
        return [Stream(name, obj, writable=writable) for name, (obj, writable) in OBJECTS.items()]

    def _select(self, stream: str) -> list[str]:
        fields = ["Id", "SystemModstamp", *dict.fromkeys(self.field_map[stream].values())]
        if self.config["include_deleted"]:
            fields.append("IsDeleted")
        return fields

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        obj = self.stream(stream).vendor_object
        cursor = cursor or Cursor()
        where = f" WHERE SystemModstamp >= {cursor.value:%Y-%m-%dT%H:%M:%SZ}" if cursor.value else ""
        fields = ", ".join(self._select(stream))
        soql = f"SELECT {fields} FROM {obj}{where} ORDER BY SystemModstamp, Id"  # noqa: S608 - names checked
        headers = {"Sforce-Query-Options": f"batchSize={int(self.config['page_size'])}"}
        deleted = bool(self.config["include_deleted"])
        page = self._call("query", soql, include_deleted=deleted, headers=headers)
        what = f"the {obj} query"
        while True:
            with self.expecting(what):
                records = [self._record(stream, raw) for raw in self.rows(page, "records", what)]
                next_url = None if page.get("done", True) else str(page["nextRecordsUrl"])
            for record in records:
                if not cursor.covers(record):
                    yield record
            if next_url is None:
                return
            page = self._call("query_more", next_url, identifier_is_url=True, headers=headers)

    def _record(self, stream: str, raw: dict[str, Any]) -> Record:
        # fromisoformat, not strptime: the same result for "2024-05-01T10:00:00.000+0000", 50x faster.
        stamp = datetime.fromisoformat(raw["SystemModstamp"])
        if stamp.tzinfo is None:
            raise ValueError(f"SystemModstamp without a UTC offset: {raw['SystemModstamp']!r}")
        return Record(
            external_id=raw["Id"],
            updated_at=utc(stamp.astimezone(UTC)),
            fields=self.to_canonical(stream, raw),
            raw=raw,
            deleted=bool(raw.get("IsDeleted")),
        )

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        obj = self.stream(stream, for_write=True).vendor_object
        ext = str(self.config["external_id_field"])
        result = WriteResult()
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            payload = {
                "allOrNone": False,
                "records": [
                    {
                        "attributes": {"type": obj},
                        ext: r["external_id"],
                        **self.to_vendor(stream, r["fields"]),
                    }
                    for r in batch
                ],
            }
            answers = self._call("restful", f"composite/sobjects/{obj}/{ext}", method="PATCH", json=payload)
            what = f"the {obj} Collections upsert"
            if not isinstance(answers, list) or len(answers) != len(batch):
                raise UnexpectedResponse(
                    f"Salesforce answered {what} with {len(answers) if isinstance(answers, list) else 'no'} "
                    f"results for {len(batch)} records"
                )
            with self.expecting(what):
                for record, answer in zip(batch, answers, strict=True):
                    errors = answer.get("errors") or []
                    result.outcomes.append(
                        WriteOutcome(
                            external_id=str(record["external_id"]),
                            vendor_id=answer.get("id"),
                            created=bool(answer.get("created")),
                            error="; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
                            if not answer.get("success")
                            else None,
                        )
                    )
        return result
