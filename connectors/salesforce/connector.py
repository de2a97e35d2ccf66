"""Salesforce via simple-salesforce: we run the OAuth token request ourselves (any login host), then hand
the session to simple-salesforce for SOQL paging and sObject Collections upserts. Case threads for the
handoff are CaseComments (`IsPublished` ones are customer-visible, the others internal) and, with
Email-to-Case, the case's EmailMessages (outgoing mail is customer-visible; incoming mail is the customer's
own words, never delivered back)."""

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
from connectors.erasure import ERASURE_STREAM, erasure_targets
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
from connectors.ticket_text import comment_request, html_to_text, marked, newer, ticket_fields, unmarked
from connectors.tickets import COMMENT_STREAM, Comment, TicketState, TicketThread, TicketThreads

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # SOQL is built from these names; nothing else passes
RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")  # a Salesforce record id (15 or 18 chars)
RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
COMMENT_FIELDS = "Id, ParentId, CommentBody, IsPublished, CreatedDate, CreatedById, CreatedBy.Name"
EMAIL_FIELDS = "Id, ParentId, TextBody, HtmlBody, Incoming, FromName, CreatedDate"
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


def soql_string(value: str) -> str:
    """A SOQL string literal: quotes and backslashes escaped, so a value can never end the literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceConnector(Connector, TicketThreads):
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
        ConfigField("resolved_statuses", "Resolved case statuses (comma-separated)", default="Resolved"),
        ConfigField("case_emails", "Case e-mails (Email-to-Case) belong to the handoff thread", default=True),
    )  # fmt: skip
    sensitive_fields = ("client_secret", "password", "security_token", "private_key")
    default_field_map = {
        "contacts": {"first_name": "FirstName", "last_name": "LastName", "email": "Email", "phone": "Phone",
                     "country": "MailingCountry", "locale": "Locale__c", "account_id": "AccountId"},
        "accounts": {"name": "Name", "website": "Website", "country": "BillingCountry",
                     "industry": "Industry"},
        "tickets": {"subject": "Subject", "description": "Description", "status": "Status",
                    "priority": "Priority", "contact_id": "ContactId", "locale": "Language__c",
                    "queue": "OwnerId"},
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
            if not stream.readable:
                continue
            fields = ", ".join(self._select(stream.name))
            soql = f"SELECT {fields} FROM {stream.vendor_object} LIMIT 1"  # noqa: S608 - names checked
            self.rows(self._call("query", soql), "records", f"the {stream.vendor_object} query")
        if self.config["case_emails"]:  # Email-to-Case off: the object is missing, say so now
            soql = f"SELECT {EMAIL_FIELDS} FROM EmailMessage LIMIT 1"  # noqa: S608 - constant
            self.rows(self._call("query", soql), "records", "the EmailMessage query")

    def streams(self) -> list[Stream]:
        streams = [Stream(name, obj, writable=writable) for name, (obj, writable) in OBJECTS.items()]
        return [
            *streams,
            Stream(COMMENT_STREAM, "CaseComment", readable=False, writable=True),
            Stream(ERASURE_STREAM, "Contact", readable=False, writable=True),
        ]

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
        if stream == COMMENT_STREAM:
            return self._comments_write(records)
        if stream == ERASURE_STREAM:
            return self._erasure_write(records)
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
                        **self.to_vendor(stream, ticket_fields(stream, r["fields"])),
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

    # --- case threads (handoff) ----------------------------------------------------------------------

    def _query_all(self, soql: str, what: str) -> list[dict[str, Any]]:
        page = self._call("query", soql)
        rows: list[dict[str, Any]] = []
        while True:
            rows += self.rows(page, "records", what)
            with self.expecting(what):
                if page.get("done", True):
                    return rows
                next_url = str(page["nextRecordsUrl"])
            page = self._call("query_more", next_url, identifier_is_url=True)

    def _case_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        ext = str(self.config["external_id_field"])
        if not IDENTIFIER.match(ext):
            raise InvalidConfig("salesforce: external_id_field is not a field name")
        where = f"{ext} = {soql_string(external_id)}"
        soql = f"SELECT Id, CaseNumber, Status, IsClosed FROM Case WHERE {where} LIMIT 1"  # noqa: S608
        rows = self._query_all(soql, "the Case lookup")
        return rows[0] if rows else None

    def ticket_find(self, external_id: str) -> str | None:
        found = self._case_by_external_id(external_id)
        with self.expecting("the Case lookup"):
            return str(found["Id"]) if found else None

    def _state(self, case: Mapping[str, Any]) -> TicketState:
        resolved = {s.strip() for s in str(self.config["resolved_statuses"] or "").split(",") if s.strip()}
        status = str(case.get("Status") or "")
        if status in resolved:
            return TicketState.RESOLVED
        if case.get("IsClosed") is True or status == "Closed":
            return TicketState.CLOSED
        return TicketState.OPEN

    def ticket_thread(self, ticket_id: str, *, cursor: Cursor | None = None) -> TicketThread:
        if not RECORD_ID.match(ticket_id):
            raise ConnectorError(f"Salesforce: {ticket_id!r} is not a Case id", permanent=True)
        soql = f"SELECT Id, CaseNumber, Status, IsClosed, OwnerId FROM Case WHERE Id = '{ticket_id}'"  # noqa: S608
        cases = self._query_all(soql, "the Case query")
        if not cases:
            raise ConnectorError(f"Salesforce: Case {ticket_id} does not exist", permanent=True)
        where = f"ParentId = '{ticket_id}'"
        if cursor is not None and cursor.value is not None:
            where += f" AND CreatedDate >= {cursor.value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        soql = f"SELECT {COMMENT_FIELDS} FROM CaseComment WHERE {where} ORDER BY CreatedDate, Id"  # noqa: S608
        rows = self._query_all(soql, "the CaseComment query")
        with self.expecting("the CaseComment query"):
            comments = [self._comment(row) for row in rows]
        if self.config["case_emails"]:
            soql = f"SELECT {EMAIL_FIELDS} FROM EmailMessage WHERE {where} ORDER BY CreatedDate, Id"  # noqa: S608
            rows = self._query_all(soql, "the EmailMessage query")
            with self.expecting("the EmailMessage query"):
                comments += [self._email(row) for row in rows]
        fresh, advanced = newer(comments, cursor)
        case = cases[0]
        with self.expecting("the Case query"):
            return TicketThread(
                ticket_id=str(case["Id"]),
                state=self._state(case),
                comments=fresh,
                cursor=advanced,
                queue=str(case.get("OwnerId") or ""),
                details={
                    "number": str(case.get("CaseNumber") or ""),
                    "status": str(case.get("Status") or ""),
                },
            )

    def _comment(self, row: Mapping[str, Any]) -> Comment:
        stamp = datetime.fromisoformat(str(row["CreatedDate"]))
        if stamp.tzinfo is None:
            raise ValueError(f"CreatedDate without a UTC offset: {row['CreatedDate']!r}")
        text, hub_id = unmarked(str(row.get("CommentBody") or ""))
        author = (row.get("CreatedBy") or {}).get("Name") or ""
        return Comment(
            id=str(row["Id"]),
            created_at=utc(stamp),
            body=text,
            public=row.get("IsPublished") is True,  # unpublished (or unknown) comments are internal
            author=str(author),
            from_hub=hub_id is not None,
        )

    def _email(self, row: Mapping[str, Any]) -> Comment:
        stamp = datetime.fromisoformat(str(row["CreatedDate"]))
        if stamp.tzinfo is None:
            raise ValueError(f"CreatedDate without a UTC offset: {row['CreatedDate']!r}")
        text = row.get("TextBody") or html_to_text(str(row.get("HtmlBody") or ""))
        body, hub_id = unmarked(str(text))
        return Comment(
            id=str(row["Id"]),
            created_at=utc(stamp),
            body=body,
            public=row.get("Incoming") is False,  # sent to the customer; unknown direction stays private
            author=str(row.get("FromName") or ""),
            from_hub=hub_id is not None,
        )

    def _comments_write(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Append each customer message as a published CaseComment, unless its marker is already there.

        A case not found yet is transient (its own outbox message may be in flight): the whole call is
        retried, and the markers keep the comments already posted from doubling. A closed case fails
        that record for good.
        """
        result = WriteResult()
        for record in records:
            checked = comment_request(record, "Salesforce")
            if isinstance(checked, WriteOutcome):
                result.outcomes.append(checked)
                continue
            ext, fields, ticket_ext = checked
            case = self._case_by_external_id(ticket_ext)
            if case is None:
                raise ConnectorError(
                    f"Salesforce: no Case with external id {ticket_ext} yet (it may still be being created)",
                    permanent=False,
                )
            with self.expecting("the Case lookup"):
                case_id = str(case["Id"])
                if not RECORD_ID.match(case_id):
                    raise ValueError(f"not a record id: {case_id!r}")
            # CommentBody cannot be filtered in SOQL: read the case's comments and look for the marker.
            soql = f"SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '{case_id}'"  # noqa: S608
            with self.expecting("the CaseComment query"):
                existing = [
                    str(row["Id"])
                    for row in self._query_all(soql, "the CaseComment query")
                    if unmarked(str(row.get("CommentBody") or ""))[1] == ext
                ]
            if existing:
                result.outcomes.append(WriteOutcome(ext, existing[0], created=False))
                continue
            if self._state(case) is TicketState.CLOSED:
                number = case.get("CaseNumber") or case_id
                result.outcomes.append(
                    WriteOutcome(ext, error=f"Salesforce: Case {number} is closed; it takes no comments")
                )
                continue
            body = {
                "ParentId": case_id,
                "CommentBody": marked(str(fields.get("body") or ""), ext),
                "IsPublished": True,
            }
            answer = self._call("restful", "sobjects/CaseComment/", method="POST", json=body)
            with self.expecting("the CaseComment insert"):
                result.outcomes.append(WriteOutcome(ext, str(answer["id"]), created=True))
        return result

    # --- erasure requests (issue 22) -------------------------------------------------------------

    def _erasure_write(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Delete the subject's Contacts and Leads: the synced ids, plus those found by e-mail (SOQL).

        A record already deleted (404 ENTITY_IS_DELETED / NOT_FOUND) counts as erased, so a retried request
        finishes instead of failing on what its first try removed.
        """
        result = WriteResult()
        for record in records:
            fields = record["fields"]
            targets = erasure_targets(fields, {"contacts": "Contact", "leads": "Lead"})
            email = str(fields.get("lookup_email") or "")
            if email:
                for obj in ("Contact", "Lead"):
                    soql = f"SELECT Id FROM {obj} WHERE Email = {soql_string(email)}"  # noqa: S608
                    targets += [(obj, str(row["Id"])) for row in self._query_all(soql, f"the {obj} lookup")]
            deleted: list[str] = []
            for obj, record_id in dict.fromkeys(targets):
                if not RECORD_ID.match(record_id):
                    continue  # not a Salesforce id: nothing of ours to delete
                try:
                    self._call("restful", f"sobjects/{obj}/{record_id}", method="DELETE")
                except ConnectorError as exc:
                    if exc.status != 404:
                        raise
                    continue
                deleted.append(record_id)
            result.outcomes.append(WriteOutcome(str(record["external_id"]), ",".join(deleted)[:255]))
        return result
