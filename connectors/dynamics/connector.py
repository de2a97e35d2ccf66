"""Microsoft Dynamics 365 / Dataverse Web API (OData v4): an app registration's client-credentials token from
Entra ID through MSAL, reads with change tracking (a delta link per stream kept in the cursor, deletions as
`$deletedEntity`), upserts by alternate key, `$batch` for bulk writes with a result per record, and the
service protection limits (429 + Retry-After) as RateLimited for the hub's bucket and breaker.

Case threads (human handoff) are the case's notes (`annotations` regarding the incident). Dataverse has no
"public" flag on a note; the documented customer-visible ones are Power Pages' (portal) convention: a note
whose text starts with `*WEB*` is shown to the customer, every other note is internal. So an agent answers
the customer with a `*WEB*` note (as on the portal) and keeps internal notes private; e-mail activities are
not read (an e-mail already reaches the customer by mail: relaying it to the chat would double it). The
customer's chat messages are appended as notes (with the hub's marker, so they come back `from_hub`).
Routing: the canonical `queue` (a queue's id or name) puts a new case in that queue with `AddToQueue`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import requests

from connectors.base import (
    ConfigField,
    Cursor,
    HttpConnector,
    Record,
    Stream,
    WriteOutcome,
    WriteResult,
    utc,
)
from connectors.errors import (
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import HttpSession, parse_retry_after
from connectors.ticket_text import comment_request, html_to_text, marked, newer, ticket_fields, unmarked
from connectors.tickets import COMMENT_STREAM, Comment, TicketState, TicketThread, TicketThreads

API = "/api/data/v9.2"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"
ENTITIES: dict[str, tuple[str, str, bool]] = {  # stream -> (entity set, primary key, writable)
    "contacts": ("contacts", "contactid", True),
    "accounts": ("accounts", "accountid", True),
    "tickets": ("incidents", "incidentid", True),
    "leads": ("leads", "leadid", True),
    "orders": ("salesorders", "salesorderid", False),
}
#: Lookup columns as read (`_x_value`) → how a write binds them (`x_<table>@odata.bind` to an entity set).
BINDS = {
    "_parentcustomerid_value": ("parentcustomerid_account", "accounts"),
    "_customerid_value": ("customerid_contact", "contacts"),
}
#: Option set columns take integers.
OPTION_SETS = frozenset({"prioritycode", "statuscode", "statecode"})
#: Service protection limits (learn.microsoft.com/power-apps/developer/data-platform/api-limits), per user
#: per 5 minutes: requests, combined execution time, concurrent requests.
LIMITS = {"0x80072322": "requests", "0x80072321": "execution_time", "0x80072326": "concurrency"}
DELTA_EXPIRED = "0x80044352"
#: Hosts of Microsoft's clouds: MSAL validates these authorities itself; any other host (the simulator, an
#: on-premises AD FS) is taken as configured.
MICROSOFT_AUTHORITIES = frozenset({"login.microsoftonline.com", "login.microsoftonline.us",
                                   "login.chinacloudapi.cn", "login.partner.microsoftonline.cn"})  # fmt: skip
MAX_BATCH = 1000  # requests per $batch (Dataverse's limit)
#: Incident statecode → the handoff's view: 0 Active, 1 Resolved, 2 Cancelled.
CASE_STATES = {0: TicketState.OPEN, 1: TicketState.RESOLVED, 2: TicketState.CLOSED}
NOTE_COLUMNS = "annotationid,notetext,createdon,_createdby_value"


class DeltaExpired(ConnectorError):
    """The stored delta token is older than the org keeps change tracking data: read everything again."""


class DynamicsConnector(HttpConnector, TicketThreads):
    kind = "dynamics365"
    label = "Dynamics 365"
    config_schema = (
        ConfigField("org_url", "Environment URL", required=True, url=True,
                    help="https://<org>.crm.dynamics.com (Power Platform admin center → Environments)"),
        ConfigField("tenant_id", "Directory (tenant) id", required=True,
                    help="The Entra ID tenant of the app registration (GUID or contoso.onmicrosoft.com)"),
        ConfigField("client_id", "Application (client) id", required=True),
        ConfigField("client_secret", "Client secret", required=True, secret=True),
        ConfigField("authority_host", "Authority host", default="https://login.microsoftonline.com", url=True,
                    help="Entra ID sign-in host; change only for a national cloud"),
        ConfigField("page_size", "Rows per page", default=1000, help="Prefer: odata.maxpagesize (≤ 5000)"),
        ConfigField("change_tracking", "Change tracking", default=True,
                    help="Incremental reads with delta links; needs 'Track changes' on each table"),
        ConfigField("contact_key", "Contacts upsert key", default="emailaddress1",
                    choices=("emailaddress1", "external_id"),
                    help="Alternate key contacts are upserted by: their e-mail, or the external id column"),
        ConfigField("key_column", "External id column", default="hub_externalid",
                    help="Column with an alternate key that holds the hub's external id"),
        ConfigField("case_customer", "Default customer of new cases",
                    help="Account GUID new cases are filed under when they name no contact"),
        ConfigField("batch_size", "Records per $batch", default=100),
        ConfigField("public_note_prefix", "Prefix of notes the customer sees", default="*WEB*",
                    help="A handoff relays a case note to the customer only when its text starts with "
                         "this prefix (Power Pages' *WEB*); empty: every note"),
    )  # fmt: skip
    sensitive_fields = ("client_secret",)
    default_field_map = {
        "contacts": {"first_name": "firstname", "last_name": "lastname", "email": "emailaddress1",
                     "phone": "telephone1", "country": "address1_country",
                     "account_id": "_parentcustomerid_value"},
        "accounts": {"name": "name", "website": "websiteurl", "country": "address1_country",
                     "phone": "telephone1"},
        "tickets": {"subject": "title", "description": "description", "priority": "prioritycode",
                    "status": "statuscode" + FORMATTED, "number": "ticketnumber",
                    "contact_id": "_customerid_value"},
        "leads": {"first_name": "firstname", "last_name": "lastname", "email": "emailaddress1",
                  "phone": "telephone1", "company": "companyname", "description": "description",
                  "source": "subject", "status": "statuscode" + FORMATTED},
        "orders": {"number": "ordernumber", "name": "name", "status": "statuscode" + FORMATTED,
                   "amount": "totalamount", "currency": "_transactioncurrencyid_value" + FORMATTED,
                   "contact_id": "_customerid_value"},
    }  # fmt: skip

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        super().__init__(config, session=session)
        parts = urlsplit(str(self.config["org_url"]).strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidConfig(
                "Dynamics 365: the environment URL must look like https://<org>.crm.dynamics.com"
            )
        self.org_url = f"{parts.scheme}://{parts.netloc}"
        self.base_url = self.org_url + API
        self.scope = f"{self.org_url}/.default"
        host = str(self.config["authority_host"]).rstrip("/")
        tenant = str(self.config["tenant_id"]).strip()
        if not tenant or "/" in tenant or not urlsplit(host).hostname:
            raise InvalidConfig("Dynamics 365: tenant id and authority host must be a tenant and a URL")
        self.authority = f"{host}/{tenant}"
        for name in ("page_size", "batch_size"):
            value = self.config[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5000:
                raise InvalidConfig(f"Dynamics 365: setting '{name}' must be a whole number from 1 to 5000")
        if self.config["batch_size"] > MAX_BATCH:
            raise InvalidConfig(f"Dynamics 365: a $batch holds at most {MAX_BATCH} requests")
        if not str(self.config["key_column"]).isidentifier():
            raise InvalidConfig("Dynamics 365: the external id column must be a column's logical name")
        if self.config["case_customer"]:
            try:
                uuid.UUID(str(self.config["case_customer"]))
            except ValueError:
                raise InvalidConfig(
                    "Dynamics 365: the default customer of new cases must be an account id"
                ) from None
        self._app: msal.ConfidentialClientApplication | None = None
        self._queues: dict[str, str] = {}  # queue name → id
        self._error_code: str | None = None

    # --- auth -------------------------------------------------------------------------------------

    def _msal(self) -> msal.ConfidentialClientApplication:
        """The MSAL app, made on first use: it fetches the tenant's OpenID configuration when created."""
        if self._app is None:
            known = (urlsplit(self.authority).hostname or "") in MICROSOFT_AUTHORITIES
            self._app = msal.ConfidentialClientApplication(
                str(self.config["client_id"]),
                client_credential=str(self.config["client_secret"]),
                authority=self.authority,
                http_client=self.session,  # the hub's guarded session: SSRF guard, timeouts, redaction
                instance_discovery=None if known else False,
                validate_authority=known,
            )
        return self._app

    def auth_headers(self, *, refresh: bool) -> dict[str, str]:
        try:
            app = self._msal()
            if refresh:  # the API refused the cached token: drop it so MSAL asks Entra ID again
                cache = app.token_cache
                for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(item)
            result = app.acquire_token_for_client(scopes=[self.scope])
        except ConnectorError:
            raise
        except ValueError as exc:  # MSAL: the authority's configuration was missing or malformed
            raise VendorUnavailable(
                self.session.redact(f"Dynamics 365: Entra ID sign-in failed ({exc})")
            ) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = str(result.get("error") or "no token") if isinstance(result, dict) else "no token"
            detail = str(result.get("error_description") or "").split(" Trace ID")[0][:300]
            message = self.session.redact(
                f"Dynamics 365: Entra ID refused the token request: {error} {detail}"
            )
            if error in ("invalid_client", "unauthorized_client", "invalid_scope", "invalid_request"):
                raise AuthFailed(message.strip(), code=error)
            raise VendorUnavailable(message.strip(), code=error)
        self.session.add_secret(str(token))
        return {"Authorization": f"Bearer {token}"}

    # --- errors -----------------------------------------------------------------------------------

    def error_text(self, response: requests.Response) -> str:
        self._error_code = None
        error = response.json()["error"]
        self._error_code = str(error.get("code") or "") or None
        return f"{error['message']} ({error.get('code')}) [HTTP {response.status_code}]"

    def rate_limit(self, response: requests.Response) -> RateLimited | None:
        """429 for each of the three service protection limits, with Retry-After in seconds."""
        if response.status_code != 429:
            return None
        code, message = "", "too many requests"
        try:
            error = response.json()["error"]
            code, message = str(error.get("code") or ""), str(error.get("message") or message)
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        retry = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(
            f"Dynamics 365 service protection limit: {message[:200]}",
            retry_after=retry if retry is not None else 60.0,
            scope=LIMITS.get(code, "requests"),
            status=429,
            code=code or None,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """As HttpConnector.request, adding the Dataverse error code to the typed error."""
        headers = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json",
                   **kwargs.pop("headers", {})}  # fmt: skip
        self._error_code = None
        try:
            return super().request(method, path, headers=headers, **kwargs)
        except ConnectorError as exc:
            if exc.code is None and self._error_code:
                exc.code = self._error_code
            if exc.code == DELTA_EXPIRED or exc.status == 410:
                raise DeltaExpired(exc.message, status=exc.status, code=exc.code) from exc
            raise

    # --- interface --------------------------------------------------------------------------------

    def check_connection(self) -> None:
        body = self.json(self.request("GET", "/WhoAmI"))
        with self.expecting("WhoAmI"):
            uuid.UUID(str(body["UserId"]))
        for stream in self.streams():
            if stream.name not in ENTITIES:
                continue
            entity_set, key, _ = ENTITIES[stream.name]
            response = self.request("GET", f"/{entity_set}", params={"$select": key, "$top": "1"})
            self.rows(self.json(response), "value", f"the {entity_set} entity set")

    def streams(self) -> list[Stream]:
        return [
            *(
                Stream(name, entity_set, writable=writable)
                for name, (entity_set, _, writable) in ENTITIES.items()
            ),
            Stream(COMMENT_STREAM, "annotations", readable=False, writable=True),
        ]

    def _select(self, stream: str) -> str:
        key = ENTITIES[stream][1]
        columns = [key, "modifiedon"]
        for vendor in self.field_map[stream].values():
            columns.append(vendor.split("@", 1)[0])
        return ",".join(dict.fromkeys(columns))

    def _prefer(self, *, track: bool) -> dict[str, str]:
        prefer = [f"odata.maxpagesize={int(self.config['page_size'])}",
                  'odata.include-annotations="OData.Community.Display.V1.FormattedValue"']  # fmt: skip
        if track:
            prefer.insert(0, "odata.track-changes")
        return {"Prefer": ",".join(prefer)}

    def _own(self, link: Any, entity_set: str, what: str) -> str:
        """A next/delta link must point back at this entity set: our bearer token goes with it."""
        if not isinstance(link, str) or not link.startswith(f"{self.base_url}/{entity_set}?"):
            raise UnexpectedResponse(f"{self.label} answered {what} with a link outside {self.base_url}")
        return link

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        entity_set = self.stream(stream).vendor_object
        cursor = cursor or Cursor()
        if not self.config["change_tracking"]:
            yield from self._read_by_time(stream, cursor)
            return
        first = f"{self.base_url}/{entity_set}?$select={self._select(stream)}"
        token = (
            cursor.token
            if cursor.token and cursor.token.startswith(f"{self.base_url}/{entity_set}?")
            else None
        )
        try:
            yield from self._pages(stream, token or first, resumed=token)
        except DeltaExpired:
            # Expired change tracking data: read everything again; the new delta link comes at the end.
            yield from self._pages(stream, first, resumed=None)

    def _pages(self, stream: str, url: str, *, resumed: str | None) -> Iterator[Record]:
        """Follow next links to the delta link. Each record carries the link that re-reads its page (the
        last one of a page: the next page's, or the delta link), so a stored cursor never skips a row."""
        entity_set, key, _ = ENTITIES[stream]
        what = f"the {entity_set} entity set"
        page_link: str | None = resumed
        while True:
            response = self.request("GET", url, headers=self._prefer(track=True))
            if "odata.track-changes" not in response.headers.get("Preference-Applied", ""):
                raise ConnectorError(
                    f"{self.label}: change tracking is not enabled for {entity_set}: turn on 'Track "
                    "changes' in the table's properties, or turn change tracking off in this connection",
                    permanent=True,
                )
            body = self.json(response)
            rows = self.rows(body, "value", what)
            with self.expecting(what):
                following = body.get("@odata.nextLink") or body.get("@odata.deltaLink")
                following = self._own(following, entity_set, what)
                now = utc(datetime.now(UTC))
                records = [self._record(stream, key, raw, now, page_link) for raw in rows]
            if records:
                last = records[-1]
                records[-1] = Record(last.external_id, last.updated_at, last.fields, last.raw, last.deleted,
                                     following)  # fmt: skip
            yield from records
            if "@odata.nextLink" not in body:
                # The delta link rides on the last record; with no changes at all the stored one stays
                # (still valid: Dataverse answers it until the org's change tracking retention passes).
                return
            url = page_link = following

    def _record(self, stream: str, key: str, raw: dict[str, Any], now: datetime, token: str | None) -> Record:
        if str(raw.get("@odata.context", "")).endswith("$deletedEntity"):
            return Record(str(uuid.UUID(str(raw["id"]))), now, {}, raw, True, token)
        updated = datetime.fromisoformat(str(raw["modifiedon"]).replace("Z", "+00:00"))
        return Record(
            str(uuid.UUID(str(raw[key]))), utc(updated), self.to_canonical(stream, raw), raw, False, token
        )

    def _read_by_time(self, stream: str, cursor: Cursor) -> Iterator[Record]:
        """Without change tracking: `modifiedon ge` the cursor, oldest first, server-driven paging."""
        entity_set, key, _ = ENTITIES[stream]
        what = f"the {entity_set} entity set"
        params = f"$select={self._select(stream)}&$orderby=modifiedon asc,{key} asc"
        if cursor.value is not None:
            params += f"&$filter=modifiedon ge {cursor.value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        url = f"{self.base_url}/{entity_set}?{params}"
        now = utc(datetime.now(UTC))
        while True:
            body = self.json(self.request("GET", url, headers=self._prefer(track=False)))
            rows = self.rows(body, "value", what)
            with self.expecting(what):
                records = [self._record(stream, key, raw, now, None) for raw in rows]
                following = body.get("@odata.nextLink")
                if following is not None:
                    following = self._own(following, entity_set, what)
            for record in records:
                if not cursor.covers(record):
                    yield record
            if not following or not rows:
                return
            url = following

    # --- writes -----------------------------------------------------------------------------------

    def _key(self, stream: str, record: Mapping[str, Any]) -> str:
        """The alternate-key segment a record is upserted by: `(emailaddress1='a@b.c')` or the id column."""
        if stream == "contacts" and self.config["contact_key"] == "emailaddress1":
            column, value = "emailaddress1", (record.get("fields") or {}).get("email")
            if not value:
                raise ValueError("a contact needs an e-mail to be upserted by emailaddress1")
        else:
            column, value = str(self.config["key_column"]), record["external_id"]
        literal = str(value).replace("'", "''")
        return f"({column}='{quote(literal, safe='@')}')"

    def _body(self, stream: str, record: Mapping[str, Any]) -> dict[str, Any]:
        fields = dict(ticket_fields(stream, record.get("fields") or {}))
        fields.pop("queue", None)  # Dataverse routes cases to queues with AddToQueue, not a column
        body: dict[str, Any] = {}
        for column, value in self.to_vendor(stream, fields).items():
            if "@" in column:  # formatted values are read-only
                continue
            if column in BINDS:
                bind, target = BINDS[column]
                if value:
                    body[f"{bind}@odata.bind"] = f"/{target}({uuid.UUID(str(value))})"
                continue
            if column in OPTION_SETS and isinstance(value, str) and value.isdigit():
                value = int(value)
            body[column] = value
        if stream == "contacts" and self.config["contact_key"] == "external_id":
            body.pop(str(self.config["key_column"]), None)
        if (
            stream == "tickets"
            and "customerid_contact@odata.bind" not in body
            and self.config["case_customer"]
        ):
            body["customerid_account@odata.bind"] = (
                f"/accounts({uuid.UUID(str(self.config['case_customer']))})"
            )
        return body

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        entity_set = self.stream(stream, for_write=True).vendor_object
        if stream == COMMENT_STREAM:
            return self._comments_write(records)
        result = self._upsert(stream, entity_set, records)
        if stream == "tickets":
            self._route(records, result)
        return result

    def _upsert(self, stream: str, entity_set: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        key = ENTITIES[stream][1]
        result = WriteResult()
        prepared: list[tuple[str, str, dict[str, Any]]] = []  # (external id, key segment, body)
        for record in records:
            ext = str(record["external_id"])
            try:
                if stream == "tickets":  # an unknown queue fails the case before anything is written
                    self._queue_id((record.get("fields") or {}).get("queue"))
                prepared.append((ext, self._key(stream, record), self._body(stream, record)))
            except ValueError as exc:
                result.outcomes.append(WriteOutcome(ext, error=f"{self.label}: {exc}"))
        if len(prepared) == 1:
            ext, segment, body = prepared[0]
            response = self.request("PATCH", f"/{entity_set}{segment}", params={"$select": key}, json=body,
                                    headers={"Prefer": "return=representation"})  # fmt: skip
            answer = self.json(response)
            with self.expecting(f"the {entity_set} upsert"):
                vendor_id = str(uuid.UUID(str(answer[key])))
            result.outcomes.append(WriteOutcome(ext, vendor_id, created=response.status_code == 201))
            return result
        size = int(self.config["batch_size"])
        for start in range(0, len(prepared), size):
            result.outcomes += self._batch(entity_set, key, prepared[start : start + size])
        return result

    # --- ticket threads (handoff) -----------------------------------------------------------------

    def _case(self, segment: str) -> dict[str, Any] | None:
        """One incident by key segment (`(<id>)` or the external id's alternate key); None when not there."""
        params = {"$select": "incidentid,ticketnumber,statecode,statuscode"}
        try:
            response = self.request(
                "GET", f"/incidents{segment}", params=params, headers=self._prefer(track=False)
            )
        except ConnectorError as exc:
            if exc.status == 404:
                return None
            raise
        body = self.json(response)
        with self.expecting("the case"):
            uuid.UUID(str(body["incidentid"]))
            int(body["statecode"])
        return dict(body)

    def _by_external_id(self, external_id: str) -> str:
        literal = external_id.replace("'", "''")
        return f"({self.config['key_column']}='{quote(literal, safe='@')}')"

    def ticket_find(self, external_id: str) -> str | None:
        found = self._case(self._by_external_id(external_id))
        return str(uuid.UUID(str(found["incidentid"]))) if found else None

    def ticket_thread(self, ticket_id: str, *, cursor: Cursor | None = None) -> TicketThread:
        try:
            case_id = str(uuid.UUID(ticket_id))
        except ValueError:
            raise ConnectorError(
                f"{self.label}: {ticket_id[:60]!r} is not a case id", permanent=True
            ) from None
        case = self._case(f"({case_id})")
        if case is None:
            raise ConnectorError(f"{self.label}: case {case_id} does not exist", permanent=True)
        comments = [self._note(raw)[0] for raw in self._notes(case_id, cursor)]
        fresh, advanced = newer(comments, cursor)
        queue = self._queue_of(case_id)
        with self.expecting("the case"):
            status = str(case.get("statuscode" + FORMATTED) or case.get("statuscode") or "")
            return TicketThread(
                ticket_id=case_id,
                state=CASE_STATES.get(int(case["statecode"]), TicketState.OPEN),
                comments=fresh,
                cursor=advanced,
                queue=queue,
                details={"number": str(case.get("ticketnumber") or ""), "status": status},
            )

    def _notes(self, case_id: str, cursor: Cursor | None) -> Iterator[dict[str, Any]]:
        """The case's notes from the cursor's second on, oldest first, following next links."""
        what = "the case's notes (annotations)"
        where = f"_objectid_value eq {case_id}"
        if cursor is not None and cursor.value is not None:
            where += f" and createdon ge {cursor.value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        url = (f"{self.base_url}/annotations?$select={NOTE_COLUMNS}&$filter={quote(where, safe=' ')}"
               "&$orderby=createdon asc,annotationid asc")  # fmt: skip
        while True:
            body = self.json(self.request("GET", url, headers=self._prefer(track=False)))
            yield from self.rows(body, "value", what)
            with self.expecting(what):
                following = body.get("@odata.nextLink")
                if following is None:
                    return
                url = self._own(following, "annotations", what)

    def _note(self, raw: Mapping[str, Any]) -> tuple[Comment, str | None]:
        """A note as a comment, with the hub external id of its marker (None: not the hub's)."""
        what = "the case's notes (annotations)"
        with self.expecting(what):
            text = html_to_text(str(raw.get("notetext") or ""))
            prefix = str(self.config["public_note_prefix"] or "")
            public = text.startswith(prefix)
            if prefix and public:
                text = text[len(prefix) :]
            body, hub_id = unmarked(text)
            created = datetime.fromisoformat(str(raw["createdon"]).replace("Z", "+00:00"))
            comment = Comment(
                id=str(uuid.UUID(str(raw["annotationid"]))),
                created_at=utc(created),
                body=body,
                public=public and hub_id is None,
                author=str(raw.get("_createdby_value" + FORMATTED) or ""),
                from_hub=hub_id is not None,
            )
            return comment, hub_id

    def _queue_of(self, case_id: str) -> str:
        """The name of the queue the case is in ("" when none): its queue item's queue."""
        what = "the case's queue items"
        params = {"$select": "queueitemid,_queueid_value", "$filter": f"_objectid_value eq {case_id}"}
        body = self.json(self.request("GET", "/queueitems", params=params, headers=self._prefer(track=False)))
        rows = self.rows(body, "value", what)
        with self.expecting(what):
            return str(rows[0].get("_queueid_value" + FORMATTED) or rows[0]["_queueid_value"]) if rows else ""

    def _comments_write(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Append each customer message to its case as a note, unless its marker is already there.

        A case not found yet is transient (its own outbox message may be in flight): the whole call is
        retried, and the markers keep the notes already added from doubling. A resolved or cancelled case
        fails that record for good (Dataverse keeps inactive cases read-only).
        """
        result = WriteResult()
        for record in records:
            checked = comment_request(record, self.label)
            if isinstance(checked, WriteOutcome):
                result.outcomes.append(checked)
                continue
            ext, fields, ticket_ext = checked
            case = self._case(self._by_external_id(ticket_ext))
            if case is None:
                raise ConnectorError(
                    f"{self.label}: no case with external id {ticket_ext[:100]} yet (it may be in flight)",
                    permanent=False,
                )
            case_id = str(uuid.UUID(str(case["incidentid"])))
            existing = next(
                (note for note, hub_id in map(self._note, self._notes(case_id, None)) if hub_id == ext), None
            )
            if existing is not None:
                result.outcomes.append(WriteOutcome(ext, existing.id, created=False))
                continue
            if int(case["statecode"]) != 0:
                number = case.get("ticketnumber") or case_id
                result.outcomes.append(
                    WriteOutcome(
                        ext,
                        error=f"{self.label}: case {number} is closed (resolved or cancelled)",
                    )
                )
                continue
            note = {
                "subject": "Chat message from the customer",
                "notetext": marked(str(fields.get("body") or ""), ext),
                "objectid_incident@odata.bind": f"/incidents({case_id})",
            }
            response = self.request("POST", "/annotations", params={"$select": "annotationid"}, json=note,
                                    headers={"Prefer": "return=representation"})  # fmt: skip
            answer = self.json(response)
            with self.expecting("the new note"):
                note_id = str(uuid.UUID(str(answer["annotationid"])))
            result.outcomes.append(WriteOutcome(ext, note_id, created=True))
        return result

    # --- routing: cases into queues --------------------------------------------------------------------

    def _queue_id(self, queue: Any) -> str | None:
        """The id of the queue a case goes to: the canonical `queue` as a queue id or its name. None for no
        queue; ValueError (the record fails for good) for one that does not exist."""
        name = str(queue or "").strip()
        if not name:
            return None
        if name not in self._queues:
            try:
                wanted = str(uuid.UUID(name))
                path, params = f"/queues({wanted})", {"$select": "queueid"}
            except ValueError:
                literal = name.replace("'", "''")
                path, params = "/queues", {"$select": "queueid,name", "$filter": f"name eq '{literal}'"}
            try:
                body = self.json(self.request("GET", path, params=params))
            except ConnectorError as exc:
                if exc.status == 404:
                    raise ValueError(f"there is no queue {name[:100]!r}") from None
                raise
            with self.expecting("the queue lookup"):
                rows = self.rows(body, "value", "the queue lookup") if "value" in body else [body]
                ids = [str(uuid.UUID(str(row["queueid"]))) for row in rows]
            if len(ids) != 1:
                problem = "there is no queue" if not ids else "more than one queue is named"
                raise ValueError(f"{problem} {name[:100]!r}")
            self._queues[name] = ids[0]
        return self._queues[name]

    def _route(self, records: Sequence[Mapping[str, Any]], result: WriteResult) -> None:
        """AddToQueue for each case written with a queue. On every write, as ServiceNow's assignment group
        is: a retried write whose first AddToQueue failed still lands the case in its queue."""
        written = {o.external_id: o.vendor_id for o in result.outcomes if o.vendor_id and not o.error}
        for record in records:
            ext = str(record["external_id"])
            if not written.get(ext):
                continue
            queue_id = self._queue_id((record.get("fields") or {}).get("queue"))
            if queue_id is None:
                continue
            target = {"@odata.type": "Microsoft.Dynamics.CRM.incident", "incidentid": written[ext]}
            answer = self.json(self.request(
                "POST", f"/queues({queue_id})/Microsoft.Dynamics.CRM.AddToQueue", json={"Target": target}
            ))  # fmt: skip
            with self.expecting("AddToQueue"):
                uuid.UUID(str(answer["QueueItemId"]))

    def _batch(
        self, entity_set: str, key: str, items: list[tuple[str, str, dict[str, Any]]]
    ) -> list[WriteOutcome]:
        """One $batch: each upsert in a change set of its own, continue-on-error, so each record succeeds or
        fails alone; a transient failure of any (429, 5xx) raises, and the idempotent upserts are retried."""
        boundary = f"batch_{uuid.uuid4().hex}"
        parts = []
        for index, (_, segment, body) in enumerate(items, start=1):
            changeset = f"changeset_{uuid.uuid4().hex}"
            inner = (f"PATCH {self.base_url}/{entity_set}{segment}?$select={key} HTTP/1.1\r\n"
                     "Content-Type: application/json\r\nPrefer: return=representation\r\n\r\n"
                     f"{json.dumps(body, separators=(',', ':'))}")  # fmt: skip
            parts.append(
                f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
                f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: {index}\r\n\r\n{inner}\r\n--{changeset}--\r\n"
            )
        payload = ("".join(parts) + f"--{boundary}--\r\n").encode()
        response = self.request(
            "POST",
            "/$batch",
            data=payload,
            headers={
                "Content-Type": f"multipart/mixed; boundary={boundary}",
                "Prefer": "odata.continue-on-error",
            },
        )
        answers = self._batch_answers(response)
        outcomes = []
        with self.expecting("the $batch"):
            for index, (ext, _, _) in enumerate(items, start=1):
                status, body = answers[str(index)]
                if status in (200, 201):
                    outcomes.append(WriteOutcome(ext, str(uuid.UUID(str(body[key]))), created=status == 201))
                    continue
                error = body.get("error") if isinstance(body, dict) else None
                code = str(error.get("code")) if isinstance(error, dict) else ""
                text = str(error.get("message")) if isinstance(error, dict) else f"HTTP {status}"
                if status == 429:
                    raise RateLimited(
                        f"{self.label} service protection limit: {text[:200]}",
                        retry_after=60.0,
                        scope=LIMITS.get(code, "requests"),
                        status=429,
                        code=code or None,
                    )
                if status >= 500:
                    raise VendorUnavailable(f"{self.label}: {text[:200]} [HTTP {status}]", status=status)
                outcomes.append(
                    WriteOutcome(ext, error=self.session.redact(f"{self.label}: {text} ({code})"))
                )
        return outcomes

    def _batch_answers(self, response: requests.Response) -> dict[str, tuple[int, Any]]:
        """Content-ID → (status, JSON body) of a $batch answer, change set responses unpacked."""
        content_type = response.headers.get("Content-Type", "")
        if "multipart/mixed" not in content_type:
            raise VendorUnavailable(
                f"{self.label} answered the $batch with {content_type or 'no content type'}",
                status=response.status_code,
            )
        message = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + response.content)
        answers: dict[str, tuple[int, Any]] = {}

        def walk(part: Message) -> None:
            if part.is_multipart():
                for child in part.get_payload():
                    if isinstance(child, Message):
                        walk(child)
                return
            raw = part.get_payload(decode=True)
            if not isinstance(raw, bytes) or not raw.startswith(b"HTTP/"):
                raise UnexpectedResponse(f"{self.label} answered the $batch with a part that is not HTTP")
            head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
            status = int(head.split(b" ", 2)[1])
            try:
                parsed = json.loads(body) if body.strip() else {}
            except ValueError:
                raise VendorUnavailable(f"{self.label} answered the $batch with malformed JSON") from None
            answers[str(part.get("Content-ID") or len(answers) + 1)] = (status, parsed)

        with self.expecting("the $batch"):
            walk(message)
        return answers
