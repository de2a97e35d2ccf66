"""Microsoft Dynamics 365 simulator: the Entra ID token endpoint (client credentials, per tenant, with the
OpenID configuration MSAL reads) and the Dataverse Web API (OData v4) for contacts, accounts, incidents,
leads and salesorders.

Web API behaviour covered: `$select`, a `$filter` subset (`eq ne gt ge lt le` joined by `and`), `$orderby`
on modifiedon, `$top`, server-driven paging (`Prefer: odata.maxpagesize`, `@odata.nextLink`), change tracking
(`Prefer: odata.track-changes` → `@odata.deltaLink`; a delta answers changed rows and `$deletedEntity`
entries; an expired delta token answers 410 with 0x80044352), formatted values
(`odata.include-annotations`), upsert by primary or alternate key (`PATCH contacts(emailaddress1='…')`
with `If-Match: *` = update only, `If-None-Match: *` = create only, `return=representation` = 201/200),
`$batch` (multipart/mixed, change sets atomic, `odata.continue-on-error`), Dataverse's error JSON, a 401 with
`WWW-Authenticate` and the service protection limits per user (requests, combined execution time,
concurrency in a 300 s window: 429 with Retry-After and the documented error codes).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from connectors.simulation import (
    Row,
    SimRequest,
    SimResponse,
    Table,
    TicketSimulator,
    json_response,
    now_s,
    seed_ts,
)

API = "/api/data/v9.2"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"
#: Service protection error codes (learn.microsoft.com/power-apps/developer/data-platform/api-limits).
LIMIT_CODES = {
    "requests": (
        "0x80072322",
        "Number of requests exceeded the limit of {limit} over time window of 300 seconds.",
    ),
    "execution_time": (
        "0x80072321",
        "Combined execution time of incoming requests exceeded limit of {limit} milliseconds over time "
        "window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests "
        "and try again later.",
    ),
    "concurrency": ("0x80072326", "Number of concurrent requests exceeded the limit of {limit}."),
}
DELTA_EXPIRED = "0x80044352"
NOT_FOUND = "0x80040217"
DUPLICATE = "0x80040237"
BAD_REQUEST = "0x80060888"
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_TERM = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le)\s+('(?:[^']|'')*'|[\w:.+-]+)\s*$")
_COOKIE = re.compile(r'<cookie pagenumber="(\d+)" last="([^"]*)" v="(\d+)" delta="(-?\d+)" />')

ORDER_STATUS = {1: "New", 2: "Pending", 3: "In Progress", 100001: "Complete", 100003: "Invoiced"}
ORDER_STATUS_BY_SEED = {"Draft": 1, "Activated": 3, "Shipped": 100001, "Delivered": 100003, "Cancelled": 2}
CASE_STATUS = {1: "In Progress", 2: "On Hold", 3: "Waiting for Details", 5: "Problem Solved", 6: "Cancelled"}
CASE_STATUS_BY_SEED = {"New": 1, "Working": 1, "Escalated": 2, "Closed": 5}
LEAD_STATUS = {1: "New", 2: "Contacted", 3: "Qualified", 4: "Lost"}
PRIORITY = {1: "High", 2: "Normal", 3: "Low"}
CURRENCIES = {"EUR": "Euro", "USD": "US Dollar", "JPY": "Japanese Yen", "GBP": "Pound Sterling"}


@dataclass(frozen=True)
class EntitySet:
    """One Dataverse table as the Web API exposes it."""

    name: str  # entity set name (plural), e.g. "contacts"
    logical: str  # logical name, e.g. "contact"
    pk: str
    stream: str  # canonical stream the simulator seeds it from
    columns: frozenset[str]
    keys: tuple[str, ...] = ("hub_externalid",)  # alternate keys defined on the table
    options: dict[str, dict[int, str]] = field(default_factory=dict)  # option sets with their labels


def _entity(name: str, logical: str, stream: str, columns: str, **kwargs: Any) -> EntitySet:
    pk = f"{logical}id"
    common = f"{pk} createdon modifiedon versionnumber statecode statuscode hub_externalid"
    return EntitySet(name, logical, pk, stream, frozenset(f"{common} {columns}".split()), **kwargs)


ENTITY_SETS: dict[str, EntitySet] = {
    e.name: e
    for e in (
        _entity("contacts", "contact", "contacts",
                "firstname lastname fullname emailaddress1 telephone1 address1_country "
                "_parentcustomerid_value",
                keys=("emailaddress1", "hub_externalid")),
        _entity("accounts", "account", "accounts", "name websiteurl address1_country telephone1"),
        _entity("incidents", "incident", "tickets",
                "title description ticketnumber prioritycode _customerid_value",
                options={"statuscode": CASE_STATUS, "prioritycode": PRIORITY}),
        _entity("leads", "lead", "leads",
                "subject firstname lastname fullname emailaddress1 telephone1 companyname description",
                options={"statuscode": LEAD_STATUS}),
        _entity("salesorders", "salesorder", "orders",
                "name ordernumber totalamount _transactioncurrencyid_value _customerid_value",
                keys=("ordernumber",), options={"statuscode": ORDER_STATUS}),
        # Notes on a record's timeline (the case thread of a handoff), queues and their items (routing).
        _entity("annotations", "annotation", "annotations",
                "subject notetext objecttypecode _objectid_value _createdby_value", keys=()),
        _entity("queues", "queue", "queues", "name", keys=()),
        _entity("queueitems", "queueitem", "queueitems",
                "title objecttypecode _objectid_value _queueid_value", keys=()),
    )
}  # fmt: skip
#: Seeded queues (name → id): cases are routed to one with AddToQueue.
QUEUES = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"dynamics:queue:{name}"))
          for name in ("Tier 1 Support", "Billing", "Escalations")}  # fmt: skip
#: Incident states an agent can set: (statecode, statuscode). Resolved = 1, Cancelled = 2.
AGENT_STATES = {"open": (0, 1), "resolved": (1, 5), "closed": (2, 6)}
#: Power Pages shows the customer only the notes whose text starts with this prefix.
WEB_PREFIX = "*WEB*"
CURRENCY_IDS = {code: str(uuid.uuid5(uuid.NAMESPACE_URL, f"currency:{code}")) for code in CURRENCIES}
CURRENCY_NAMES = {CURRENCY_IDS[code]: name for code, name in CURRENCIES.items()}


def guid(entity: str, i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dynamics:{entity}:{i}"))


def odata_time(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _created(row: Row) -> int:
    """A row's createdon as epoch seconds."""
    return int(dt.datetime.fromisoformat(str(row.data["createdon"]).replace("Z", "+00:00")).timestamp())


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


class ServiceProtection:
    """Dataverse's per-user limits over a sliding 300 s window (requests, execution time, concurrency)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.configure()

    def configure(self, requests: int = 6000, execution_ms: int = 1_200_000, concurrent: int = 52,
                  window: float = 300.0) -> None:  # fmt: skip
        with self.lock:
            self.limits = {"requests": requests, "execution_time": execution_ms, "concurrency": concurrent}
            self.window = window
            self.calls: deque[float] = deque()
            self.durations: deque[tuple[float, float]] = deque()  # (finished at, milliseconds)
            self.inflight = 0

    def enter(self) -> tuple[str, float] | None:
        """Count one call in; return (limit, retry after seconds) when it must be refused."""
        now = time.monotonic()
        with self.lock:
            while self.calls and self.calls[0] <= now - self.window:
                self.calls.popleft()
            while self.durations and self.durations[0][0] <= now - self.window:
                self.durations.popleft()
            if self.inflight >= self.limits["concurrency"]:
                return "concurrency", 1.0
            if len(self.calls) >= self.limits["requests"]:
                return "requests", max(1.0, self.calls[0] + self.window - now)
            if sum(ms for _, ms in self.durations) >= self.limits["execution_time"]:
                return "execution_time", max(1.0, self.durations[0][0] + self.window - now)
            self.calls.append(now)
            self.inflight += 1
            return None

    def leave(self, started: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.inflight -= 1
            self.durations.append((now, (now - started) * 1000))


class DynamicsSimulator(TicketSimulator):
    vendor = "dynamics365"
    scheme = "https"
    tenant_id = "4d1c8a52-7f3e-4b6a-9c21-0e5d6f7a8b9c"
    client_id = "b7e3f0a1-2c4d-4e6f-8a9b-0c1d2e3f4a5b"
    client_secret = "dyn~sim~client~secret~0001"  # noqa: S105 - the demo app registration's secret
    payload_keys = ("value", "contactid", "accountid", "incidentid", "leadid", "salesorderid", "UserId")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens.ttl = 3599
        self.protection = ServiceProtection()
        self.token_requests = 0
        self._version = 0
        self._version_lock = threading.RLock()
        #: Delta tokens issued before this version answer 410 (change tracking data expired).
        self.delta_floor = 0
        #: Entity sets without "Track changes" enabled (a delta request answers without a delta link).
        self.untracked: set[str] = set()
        self.tables_by_set: dict[str, Table] = {}
        #: systemuser id → full name (the formatted value of `_createdby_value`).
        self.users: dict[str, str] = {self.app_user_id: "# Hub integration"}
        self._seed()
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

    # --- data -------------------------------------------------------------------------------------

    @property
    def app_user_id(self) -> str:
        """The application user the app registration acts as (WhoAmI's UserId)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"app-user:{self.client_id}"))

    def next_version(self) -> int:
        with self._version_lock:
            self._version += 1
            return self._version

    def _seed(self) -> None:
        for name, entity in ENTITY_SETS.items():
            table = Table(name, unique=entity.keys)
            self.tables[entity.stream] = self.tables_by_set[name] = table
        for i, (name, queue_id) in enumerate(QUEUES.items()):
            self._add("queues", i, {"name": name}, row_id=queue_id)
        seed, n = self.seed, self.counts
        for i in range(n["accounts"]):
            c = seed.company(i)
            self._add("accounts", i, {"name": c["name"], "websiteurl": c["website"],
                                      "address1_country": c["country"], "telephone1": None})  # fmt: skip
        for i in range(n["contacts"]):
            p = seed.person(i)
            parent = guid("account", p["company_index"] % n["accounts"]) if n["accounts"] else None
            self._add("contacts", i, {
                "firstname": p["first_name"], "lastname": p["last_name"],
                "fullname": f"{p['first_name']} {p['last_name']}", "emailaddress1": p["email"],
                "telephone1": p["phone"], "address1_country": p["country"], "_parentcustomerid_value": parent,
            })  # fmt: skip
        for i in range(n["tickets"]):
            t = seed.ticket(i)
            customer = guid("contact", t["person_index"] % n["contacts"]) if n["contacts"] else None
            status = CASE_STATUS_BY_SEED[t["status"]]
            self._add(
                "incidents",
                i,
                {
                    "title": t["subject"],
                    "description": t["description"],
                    "ticketnumber": f"CAS-{i + 1:05d}-S1M0D7",
                    "prioritycode": min(3, int(t["priority"])),
                    "statuscode": status,
                    "statecode": 1 if status == 5 else 0,
                    "_customerid_value": customer,
                },
            )
        for i in range(n.get("leads", 0)):
            p = seed.person(50_000 + i)
            self._add("leads", i, {
                "subject": "Interested in a demo", "firstname": p["first_name"], "lastname": p["last_name"],
                "fullname": f"{p['first_name']} {p['last_name']}", "emailaddress1": p["email"],
                "telephone1": p["phone"], "companyname": None, "description": None, "statuscode": 1,
            })  # fmt: skip
        for i in range(n["orders"]):
            o = seed.order(i)
            # Every order belongs to a seeded contact, so the chat's order status can match the customer.
            customer = guid("contact", (o["company_index"] * 7) % n["contacts"]) if n["contacts"] else None
            status = ORDER_STATUS_BY_SEED[o["status"]]
            self._add("salesorders", i, {
                "name": f"Order {o['number']}", "ordernumber": f"ORD-{i + 1:05d}-D7N4M5",
                "totalamount": o["amount"], "_transactioncurrencyid_value": CURRENCY_IDS[o["currency"]],
                "_customerid_value": customer, "statuscode": status,
                "statecode": {2: 2, 100001: 4, 100003: 3}.get(status, 0),
            })  # fmt: skip

    def _add(
        self, entity_set: str, i: int, data: dict[str, Any], ts: int | None = None, row_id: str | None = None
    ) -> Row:
        entity = ENTITY_SETS[entity_set]
        row = Row(row_id or guid(entity.logical, i), seed_ts(i) if ts is None else ts, data)
        data.setdefault("statecode", 0)
        data.setdefault("statuscode", 1)
        data.setdefault("hub_externalid", None)
        data["createdon"] = odata_time(row.ts)
        data["versionnumber"] = self.next_version()
        return self.tables_by_set[entity_set].insert(row)

    def mutate(self, stream: str, row_id: str, *, ts: int) -> None:
        self.tables[stream].update(row_id, {"versionnumber": self.next_version()}, ts=ts)

    def delete(self, stream: str, row_id: str) -> None:
        table = self.tables[stream]
        table.rows[row_id].deleted = True
        table.update(row_id, {"versionnumber": self.next_version()})

    def sequential_id(self) -> str:
        """A new row id that sorts after every earlier one (Dataverse's sequential GUIDs)."""
        return str(uuid.UUID(f"{self.next_version():016x}{uuid.uuid4().hex[16:]}"))

    # --- the agent's side of a case (human handoff) -----------------------------------------------

    def incident(self, ticket: str) -> Row:
        """A case by id or ticket number; KeyError when there is none."""
        table = self.tables_by_set["incidents"]
        row = table.rows.get(ticket.lower()) or table.find("ticketnumber", ticket)
        if row is None:
            row = next((r for r in table.rows.values() if r.data.get("ticketnumber") == ticket), None)
        if row is None or row.deleted:
            raise KeyError(ticket)
        return row

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        """A support agent on a case: a note (public = with Power Pages' `*WEB*` prefix, which shows it to
        the customer; otherwise an internal note) and/or a state ("open", "resolved", "closed"). Dataverse
        sends no webhook the hub reads: the handoff's poll finds the note."""
        self.agent_check(body, state)
        if state is not None and state not in AGENT_STATES:
            raise ValueError(f"unknown state {state!r}: open, resolved or closed")
        row = self.incident(ticket)
        note = self.note_add(row.id, body, public=public, author=author) if body.strip() else None
        if state is not None:
            statecode, statuscode = AGENT_STATES[state]
            self.tables_by_set["incidents"].update(
                row.id,
                {"statecode": statecode, "statuscode": statuscode, "versionnumber": self.next_version()},
                ts=now_s(),
            )
        return {"ticket": row.id, "number": row.data.get("ticketnumber"),
                "comment_id": note.id if note else None, "state": row.data.get("statecode"),
                "webhook": None}  # fmt: skip

    def note_add(
        self, incident_id: str, body: str, *, public: bool = True, author: str = "", ts: int | None = None
    ) -> Row:
        """A note on a case by an agent (`author`), at `ts` (now when None)."""
        name = author or "Beth Anglin"
        user = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dynamics:systemuser:{name}"))
        self.users[user] = name
        return self._add("annotations", 0, {
            "subject": "Reply to the customer" if public else "Internal note",
            "notetext": f"{WEB_PREFIX} {body}" if public else body,
            "objecttypecode": "incident", "_objectid_value": incident_id, "_createdby_value": user,
        }, ts=now_s() if ts is None else ts, row_id=self.sequential_id())  # fmt: skip

    def notes(self, incident_id: str) -> list[Row]:
        """The case's notes, oldest first."""
        table = self.tables_by_set["annotations"]
        found = [
            r for r in table.rows.values() if r.data.get("_objectid_value") == incident_id and not r.deleted
        ]
        return sorted(found, key=lambda r: (_created(r), r.id))

    def queue_of(self, incident_id: str) -> str | None:
        """The name of the queue a case is in; None when in none."""
        for item in self.tables_by_set["queueitems"].rows.values():
            if item.data.get("_objectid_value") == incident_id and not item.deleted:
                return str(self.tables_by_set["queues"].rows[item.data["_queueid_value"]].data["name"])
        return None

    def expire_delta_tokens(self) -> None:
        """Make every delta token issued so far answer 410 (the org's change tracking retention passed)."""
        self.delta_floor = self.next_version()

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

    # --- identity (Entra ID) ----------------------------------------------------------------------

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

    # --- gate: auth, service protection, errors ----------------------------------------------------

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

    def _limit_response(self, limit: str, retry_after: float) -> SimResponse:
        code, message = LIMIT_CODES[limit]
        text = message.format(limit=self.protection.limits[limit])
        return json_response(429, {"error": {"code": code, "message": text}},
                             **{"Retry-After": str(int(retry_after + 0.999))})  # fmt: skip

    def rate_limited(self, request: SimRequest) -> SimResponse:
        policy = self.faults.rate_limit_policy if self.faults.rate_limit_policy in LIMIT_CODES else "requests"
        return self._limit_response(policy, float(self.faults.rate_limit_retry_after))

    def error(self, status: int, message: str, code: str | None = None) -> SimResponse:
        if status == 429:  # an injected 429 is a service protection answer, Retry-After included
            return self._limit_response("requests", 1.0)
        code = code or {400: BAD_REQUEST, 404: NOT_FOUND, 412: DUPLICATE}.get(status, "0x80040216")
        return json_response(status, {"error": {"code": code, "message": message}})

    # --- reads ------------------------------------------------------------------------------------

    def _entity(self, request: SimRequest) -> EntitySet:
        assert request.match is not None
        name = request.match.group("set")
        if name not in ENTITY_SETS:
            raise LookupError(f"Resource not found for the segment '{name}'.")
        return ENTITY_SETS[name]

    def _render(
        self, entity: EntitySet, row: Row, select: list[str] | None, formatted: bool
    ) -> dict[str, Any]:
        data = row.data
        out: dict[str, Any] = {"@odata.etag": f'W/"{data["versionnumber"]}"'}
        columns = select or sorted(entity.columns)
        for column in dict.fromkeys([*columns, entity.pk]):
            value = (
                row.id
                if column == entity.pk
                else odata_time(row.ts)
                if column == "modifiedon"
                else data.get(column)
            )
            out[column] = value
            if formatted and value is not None:
                if column in entity.options:
                    out[column + FORMATTED] = entity.options[column].get(int(value), str(value))
                elif column == "_transactioncurrencyid_value":
                    out[column + FORMATTED] = CURRENCY_NAMES.get(value, "")
                elif column == "_createdby_value":
                    out[column + FORMATTED] = self.users.get(value, "")
                elif column == "_queueid_value":
                    queue = self.tables_by_set["queues"].rows.get(value)
                    out[column + FORMATTED] = queue.data["name"] if queue is not None else ""
                elif column == "statecode":
                    out[column + FORMATTED] = "Active" if value == 0 else "Inactive"
        return out

    @staticmethod
    def _prefer(request: SimRequest) -> dict[str, str]:
        prefs: dict[str, str] = {}
        for part in request.headers.get("prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name:
                prefs[name.strip().lower()] = value.strip().strip('"')
        return prefs

    def _select(self, entity: EntitySet, query: dict[str, str]) -> list[str] | None:
        if not query.get("$select"):
            return None
        columns = [c.strip() for c in query["$select"].split(",") if c.strip()]
        unknown = [c for c in columns if c not in entity.columns]
        if unknown:
            raise ValueError(f"Could not find a property named '{unknown[0]}' on type "
                             f"'Microsoft.Dynamics.CRM.{entity.logical}'.")  # fmt: skip
        return columns

    def _filter(self, entity: EntitySet, text: str) -> Callable[[Row], bool]:
        tests: list[Callable[[Row], bool]] = []
        for term in re.split(r"\s+and\s+", text.strip()) if text.strip() else []:
            match = _TERM.match(term)
            if not match or match.group(1) not in entity.columns:
                raise ValueError(f"Syntax error or unsupported property in $filter: '{term[:80]}'")
            column, op, raw = match.groups()
            value: Any
            if raw.startswith("'"):
                value = raw[1:-1].replace("''", "'")
            elif re.fullmatch(GUID, raw):  # a lookup or key compared with a bare GUID literal
                value = raw.lower()
            elif column in ("modifiedon", "createdon"):
                value = int(dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp())
            elif raw == "null":
                value = None
            else:
                value = float(raw) if "." in raw else int(raw)
            tests.append(self._compare(entity, column, op, value))
        return lambda row: all(t(row) for t in tests)

    @staticmethod
    def _compare(entity: EntitySet, column: str, op: str, value: Any) -> Callable[[Row], bool]:
        def get(row: Row) -> Any:
            if column == "createdon":
                return _created(row)
            return (
                row.ts if column == "modifiedon" else row.id if column == entity.pk else row.data.get(column)
            )

        ops: dict[str, Callable[[Any, Any], bool]] = {
            "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
            "gt": lambda a, b: a is not None and a > b, "ge": lambda a, b: a is not None and a >= b,
            "lt": lambda a, b: a is not None and a < b, "le": lambda a, b: a is not None and a <= b,
        }  # fmt: skip
        compare = ops[op]
        return lambda row: compare(get(row), value)

    def list_rows(self, request: SimRequest) -> SimResponse:
        try:
            entity = self._entity(request)
            select = self._select(entity, request.query)
            prefs = self._prefer(request)
            query = request.query
            if "$deltatoken" in query or "odata.track-changes" in prefs:
                if {"$filter", "$orderby", "$top", "$expand"} & set(query):
                    return self.error(400, "The query parameter $filter, $orderby, $top or $expand is not "
                                      "supported with change tracking.", BAD_REQUEST)  # fmt: skip
                if entity.name in self.untracked:
                    prefs.pop("odata.track-changes", None)
                    if "$deltatoken" in query:
                        return self.error(400, f"Change tracking is not enabled for {entity.logical}.")
                else:
                    return self._tracked(request, entity, select, prefs)
            return self._untracked(request, entity, select, prefs)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except ValueError as exc:
            return self.error(400, str(exc), BAD_REQUEST)

    def _page_size(self, prefs: dict[str, str], query: dict[str, str]) -> int:
        size = int(prefs.get("odata.maxpagesize") or 5000)
        if "$top" in query:
            size = min(size, int(query["$top"]))
        return max(1, min(size, 5000))

    def _link(self, entity: EntitySet, query: dict[str, str], **params: str) -> str:
        keep = {k: v for k, v in query.items() if k in ("$select", "$filter", "$orderby")}
        parts = [f"{k}={quote(v, safe=',')}" for k, v in {**keep, **params}.items()]
        return f"{self.base_url}{API}/{entity.name}?" + "&".join(parts)

    def _annotated(self, prefs: dict[str, str]) -> bool:
        wanted = prefs.get("odata.include-annotations", "")
        return wanted in ("*", "OData.Community.Display.V1.FormattedValue")

    def _untracked(self, request: SimRequest, entity: EntitySet, select: list[str] | None,
                   prefs: dict[str, str]) -> SimResponse:  # fmt: skip
        query = request.query
        table = self.tables_by_set[entity.name]
        keep = self._filter(entity, query.get("$filter", ""))
        order = query.get("$orderby", "").replace(" asc", "").replace(" ", "")
        if order not in ("", "modifiedon", f"modifiedon,{entity.pk}", entity.pk, "createdon",
                         f"createdon,{entity.pk}"):  # fmt: skip
            raise ValueError(f"$orderby '{order}' is not supported by the simulator")

        def position(r: Row) -> tuple[int, str]:
            if order == entity.pk:
                return 0, r.id
            return (_created(r) if order.startswith("createdon") else r.ts), r.id

        cookie = _COOKIE.match(unquote(query.get("$skiptoken", "")))
        page_no = int(cookie.group(1)) if cookie else 1
        rows = sorted((r for r in table.since() if not r.deleted), key=position)
        if cookie:
            ts_s, _, last_id = cookie.group(2).partition("|")
            last = (int(ts_s), last_id)
            rows = [r for r in rows if position(r) > last]
        rows = [r for r in rows if keep(r)]
        size = self._page_size(prefs, query)
        page, more = rows[:size], len(rows) > size and "$top" not in query
        annotated = self._annotated(prefs)
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}{API}/$metadata#{entity.name}",
            "value": [self._render(entity, r, select, annotated) for r in page],
        }
        if more:
            last_key = "|".join(map(str, position(page[-1])))
            cookie_text = f'<cookie pagenumber="{page_no + 1}" last="{last_key}" v="0" delta="-1" />'
            body["@odata.nextLink"] = self._link(entity, query, **{"$skiptoken": cookie_text})
        headers = {"OData-Version": "4.0"}
        if "odata.maxpagesize" in prefs:
            headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return json_response(200, body, **headers)

    def _tracked(self, request: SimRequest, entity: EntitySet, select: list[str] | None,
                 prefs: dict[str, str]) -> SimResponse:  # fmt: skip
        """Change tracking: an initial read of every row, or the changes since a delta token; paged the same
        way, ending in a delta link that covers everything up to the version the read started at."""
        query = request.query
        table = self.tables_by_set[entity.name]
        cookie = _COOKIE.match(unquote(query.get("$skiptoken", "")))
        if cookie:
            page_no, start_version, since = int(cookie.group(1)), int(cookie.group(3)), int(cookie.group(4))
            last = cookie.group(2)
        else:
            page_no, start_version, last = 1, self._version, ""
            since = -1
            if "$deltatoken" in query:
                token = unquote(query["$deltatoken"]).partition("!")[0]
                if not token.isdigit():
                    return self.error(400, "The delta token is malformed.", BAD_REQUEST)
                since = int(token)
                if since < self.delta_floor:
                    return self.error(410, "Version stamp associated with the client has expired. Please "
                                      "perform a full sync.", DELTA_EXPIRED)  # fmt: skip
        if since < 0:  # initial read: current rows, oldest change first
            rows = [r for r in table.since() if not r.deleted and r.data["versionnumber"] <= start_version]
            keyed = [((r.ts, r.id), r) for r in rows]
        else:  # delta: rows changed after the token, in change order, deleted ones included
            rows = [r for r in table.rows.values() if since < r.data["versionnumber"] <= start_version]
            keyed = sorted(((0, f"{r.data['versionnumber']:012d}"), r) for r in rows)
        if last:
            ts_s, _, last_id = last.partition("|")
            keyed = [(k, r) for k, r in keyed if k > (int(ts_s), last_id)]
        size = self._page_size(prefs, query)
        page = keyed[:size]
        annotated = self._annotated(prefs)
        context = f"{self.base_url}{API}/$metadata#{entity.name}"
        values: list[dict[str, Any]] = []
        for _, row in page:
            if row.deleted:
                values.append(
                    {"@odata.context": f"{context}/$deletedEntity", "id": row.id, "reason": "deleted"}
                )
            else:
                values.append(self._render(entity, row, select, annotated))
        body: dict[str, Any] = {"@odata.context": context, "value": values}
        if len(keyed) > size:
            key = page[-1][0]
            cookie_text = (f'<cookie pagenumber="{page_no + 1}" last="{key[0]}|{key[1]}" v="{start_version}" '
                           f'delta="{since}" />')  # fmt: skip
            body["@odata.nextLink"] = self._link(entity, query, **{"$skiptoken": cookie_text})
        else:
            stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime())
            body["@odata.deltaLink"] = self._link(
                entity, query, **{"$deltatoken": f"{start_version}!{stamp}"}
            )
        applied = ["odata.track-changes"] + (
            [f"odata.maxpagesize={size}"] if "odata.maxpagesize" in prefs else []
        )
        return json_response(200, body, **{"OData-Version": "4.0", "Preference-Applied": ",".join(applied)})

    def who_am_i(self, request: SimRequest) -> SimResponse:
        return json_response(200, {
            "@odata.context": f"{self.base_url}{API}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": str(uuid.uuid5(uuid.NAMESPACE_URL, "bu")),
            "UserId": self.app_user_id,
            "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_URL, "org")),
        })  # fmt: skip

    def add_to_queue(self, request: SimRequest) -> SimResponse:
        """The AddToQueue action: the Target record into this queue, moved out of any other one."""
        assert request.match is not None
        queue_id = unquote(request.match.group("key")).lower()
        queue = self.tables_by_set["queues"].rows.get(queue_id)
        if queue is None or queue.deleted:
            return self.error(404, f"queue With Id = {queue_id[:40]} Does Not Exist", NOT_FOUND)
        try:
            body = request.json()
            target = body["Target"] if isinstance(body, dict) else None
            if not isinstance(target, dict):
                raise ValueError("The parameter 'Target' is missing.")
            kind = (
                str(target.get("@odata.type", "")).removeprefix("#").removeprefix("Microsoft.Dynamics.CRM.")
            )
            entity = next((e for e in ENTITY_SETS.values() if e.logical == kind), None)
            if entity is None or entity.name not in ("incidents",):
                raise ValueError(f"AddToQueue: '{kind[:40]}' is not a queue-enabled entity.")
            record = str(target.get(entity.pk) or "").lower()
            row = self.tables_by_set[entity.name].rows.get(record)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            return self.error(400, str(exc).strip("'\""), BAD_REQUEST)
        if row is None or row.deleted:
            return self.error(404, f"{entity.logical} With Id = {record[:40]} Does Not Exist", NOT_FOUND)
        items = self.tables_by_set["queueitems"]
        item = next((r for r in items.rows.values()
                     if r.data.get("_objectid_value") == row.id and not r.deleted), None)  # fmt: skip
        if item is None:
            item = self._add("queueitems", 0, {
                "title": row.data.get("title"), "objecttypecode": entity.logical, "_objectid_value": row.id,
                "_queueid_value": queue.id,
            }, ts=now_s(), row_id=self.sequential_id())  # fmt: skip
        else:
            items.update(
                item.id, {"_queueid_value": queue.id, "versionnumber": self.next_version()}, ts=now_s()
            )
        return json_response(200, {
            "@odata.context": f"{self.base_url}{API}/$metadata#Microsoft.Dynamics.CRM.AddToQueueResponse",
            "QueueItemId": item.id,
        })  # fmt: skip

    def _find(self, entity: EntitySet, key: str) -> tuple[Row | None, dict[str, Any]]:
        """The row a key segment names: a bare GUID, or `column='value'` pairs of an alternate key."""
        table = self.tables_by_set[entity.name]
        key = unquote(key)
        if re.fullmatch(GUID, key):
            row = table.rows.get(key.lower())
            return (row if row is not None and not row.deleted else None), {}
        pairs: dict[str, Any] = {}
        for part in re.findall(r"(\w+)=('(?:[^']|'')*'|[^,]+)", key):
            column, raw = part
            pairs[column] = raw[1:-1].replace("''", "'") if raw.startswith("'") else raw
        if len(pairs) != 1 or next(iter(pairs)) not in entity.keys:
            names = ", ".join(pairs) or key[:60]
            raise ValueError(f"The key '{names}' is not an alternate key of {entity.logical}; defined keys: "
                             f"{', '.join(entity.keys)}.")  # fmt: skip
        ((column, value),) = pairs.items()
        row = table.find(column, value)
        if row is not None and row.data.get(column) != value:  # the index still knows an old value
            row = None
        if row is None:
            row = next(
                (r for r in table.rows.values() if r.data.get(column) == value and not r.deleted), None
            )
        return (row if row is not None and not row.deleted else None), pairs

    def get_row(self, request: SimRequest) -> SimResponse:
        try:
            entity = self._entity(request)
            assert request.match is not None
            row, _ = self._find(entity, request.match.group("key"))
            select = self._select(entity, request.query)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except ValueError as exc:
            return self.error(400, str(exc), BAD_REQUEST)
        if row is None:
            return self.error(404, f"{entity.logical} With Id = {request.match.group('key')} Does Not Exist",
                              NOT_FOUND)  # fmt: skip
        body = self._render(entity, row, select, self._annotated(self._prefer(request)))
        return json_response(200, {"@odata.context": f"{self.base_url}{API}/$metadata#{entity.name}/$entity",
                                   **body})  # fmt: skip

    # --- writes -----------------------------------------------------------------------------------

    def _changes(self, entity: EntitySet, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError("The request body must be a JSON object.")
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                target = re.fullmatch(rf"/?(\w+)\(({GUID})\)", str(value))
                base = name.removesuffix("@odata.bind").rpartition("_")[0] or name
                column = f"_{base}_value"
                if target is None or column not in entity.columns:
                    raise ValueError(f"Invalid navigation property binding '{name}'.")
                changes[column] = target.group(2).lower()
                if column == "_objectid_value":  # a note's regarding record: it must exist
                    table = self.tables_by_set.get(target.group(1))
                    found = table.rows.get(changes[column]) if table is not None else None
                    if found is None or found.deleted:
                        raise LookupError(f"{target.group(1)} With Id = {target.group(2)} Does Not Exist")
                    changes["objecttypecode"] = ENTITY_SETS[target.group(1)].logical
                continue
            if (
                name not in entity.columns
                or name.startswith("_")
                or name in (entity.pk, "modifiedon", "createdon", "versionnumber")
            ):
                raise ValueError(f"Invalid property '{name}' was found in entity "
                                 f"'Microsoft.Dynamics.CRM.{entity.logical}'.")  # fmt: skip
            if name in entity.options and value is not None and value not in entity.options[name]:
                raise ValueError(f"A validation error occurred. The value {value!r} of '{name}' on record of "
                                 f"type '{entity.logical}' is outside the valid range.")  # fmt: skip
            changes[name] = value
        return changes

    def _write(
        self,
        entity: EntitySet,
        row: Row | None,
        pairs: dict[str, Any],
        changes: dict[str, Any],
        undo: list[Callable[[], None]] | None = None,
        row_id: str | None = None,
    ) -> tuple[Row, bool]:
        table = self.tables_by_set[entity.name]
        for column in entity.keys:
            value = changes.get(column, pairs.get(column))
            other = table.find(column, value) if value not in (None, "") else None
            if (
                other is not None
                and other is not row
                and not other.deleted
                and other.data.get(column) == value
            ):
                raise KeyError("A record with matching key values already exists.")
        if row is None:
            index = len(table.rows) + 1_000_000
            data = {**pairs, **changes}
            if entity.name in ("contacts", "leads"):
                data.setdefault(
                    "fullname", " ".join(filter(None, [data.get("firstname"), data.get("lastname")]))
                )
            if entity.name == "incidents":
                data.setdefault("ticketnumber", f"CAS-{index:05d}-N3W0N3")
            if entity.name == "salesorders":
                data.setdefault("ordernumber", f"ORD-{index:05d}-N3W0N3")
            if entity.name == "annotations":
                data.setdefault("_createdby_value", self.app_user_id)
                # Dataverse's server-made ids are sequential: notes of one second keep their order.
                row_id = row_id or self.sequential_id()
            new = self._add(entity.name, index, data, ts=now_s(), row_id=row_id)
            if undo is not None:
                undo.append(lambda: self._drop(table, new))
            return new, True
        before = dict(row.data)
        if undo is not None:
            undo.append(lambda: self._restore(table, row, before))
        table.update(row.id, {**changes, "versionnumber": self.next_version()})
        return row, False

    @staticmethod
    def _drop(table: Table, row: Row) -> None:
        with table.lock:
            table.rows.pop(row.id, None)
            table._keys.remove((row.ts, row.id))
            for index in table._indexes.values():
                for value, row_id in list(index.items()):
                    if row_id == row.id:
                        del index[value]

    @staticmethod
    def _restore(table: Table, row: Row, data: dict[str, Any]) -> None:
        with table.lock:
            row.data.clear()
            row.data.update(data)
            row.cache.clear()

    def _representation(self, request: SimRequest, entity: EntitySet, row: Row, created: bool) -> SimResponse:
        entity_id = f"{self.base_url}{API}/{entity.name}({row.id})"
        if "return=representation" not in request.headers.get("prefer", ""):
            return SimResponse(204, b"", headers={"OData-EntityId": entity_id, "OData-Version": "4.0"})
        select = self._select(entity, request.query)
        body = {"@odata.context": f"{self.base_url}{API}/$metadata#{entity.name}/$entity",
                **self._render(entity, row, select, False)}  # fmt: skip
        return json_response(201 if created else 200, body, **{"OData-EntityId": entity_id})

    def upsert_row(self, request: SimRequest, undo: list[Callable[[], None]] | None = None) -> SimResponse:
        """Upsert (PATCH by key): If-Match: * updates only (404), If-None-Match: * creates only (412)."""
        try:
            entity = self._entity(request)
            assert request.match is not None
            row, pairs = self._find(entity, request.match.group("key"))
            if row is None and not pairs and not re.fullmatch(GUID, unquote(request.match.group("key"))):
                raise ValueError("bad key")
            changes = self._changes(entity, request.json())
            if request.headers.get("if-match") == "*" and row is None:
                return self.error(
                    404, f"{entity.logical} With Ids = {request.match.group('key')} Do Not Exist", NOT_FOUND
                )
            if request.headers.get("if-none-match") == "*" and row is not None:
                return self.error(412, "A record with matching key values already exists.", DUPLICATE)
            key = unquote(request.match.group("key"))
            new_id = key.lower() if row is None and not pairs else None  # PATCH by a new GUID: that id
            row, created = self._write(entity, row, pairs, changes, undo, new_id)
            return self._representation(request, entity, row, created)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except KeyError as exc:
            return self.error(412, str(exc.args[0]), DUPLICATE)
        except (ValueError, json.JSONDecodeError) as exc:
            return self.error(400, str(exc), BAD_REQUEST)

    def create_row(self, request: SimRequest, undo: list[Callable[[], None]] | None = None) -> SimResponse:
        try:
            entity = self._entity(request)
            changes = self._changes(entity, request.json())
            row, _ = self._write(entity, None, {}, changes, undo)
            return self._representation(request, entity, row, True)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except KeyError as exc:
            return self.error(412, str(exc.args[0]), DUPLICATE)
        except (ValueError, json.JSONDecodeError) as exc:
            return self.error(400, str(exc), BAD_REQUEST)

    def delete_row(self, request: SimRequest) -> SimResponse:
        try:
            entity = self._entity(request)
            assert request.match is not None
            row, _ = self._find(entity, request.match.group("key"))
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except ValueError as exc:
            return self.error(400, str(exc), BAD_REQUEST)
        if row is None:
            return self.error(404, f"{entity.logical} Does Not Exist", NOT_FOUND)
        self.delete(entity.stream, row.id)
        return SimResponse(204, b"")

    # --- $batch -----------------------------------------------------------------------------------

    def batch(self, request: SimRequest) -> SimResponse:
        """multipart/mixed: independent requests and change sets (all-or-nothing), answered in order."""
        content_type = request.headers.get("content-type", "")
        if "multipart/mixed" not in content_type or "boundary=" not in content_type:
            return self.error(400, "The content type of a $batch request must be multipart/mixed.")
        outer = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
        parts = outer.get_payload()
        if not outer.is_multipart() or not isinstance(parts, list):
            return self.error(400, "The $batch body is not a multipart message.")
        continue_on_error = "odata.continue-on-error" in request.headers.get("prefer", "")
        answers: list[str] = []
        failed = False
        for part in parts:
            assert isinstance(part, Message)
            if failed and not continue_on_error:
                break
            if part.get_content_type() == "multipart/mixed":
                text, ok = self._changeset(request, part)
            else:
                response = self._inner(request, part, None)
                text, ok = _http_part(response), response.status < 400
            answers.append(text)
            failed = failed or not ok
        boundary = f"batchresponse_{uuid.uuid4()}"
        body = "".join(f"--{boundary}\r\n{a}\r\n" for a in answers) + f"--{boundary}--\r\n"
        return SimResponse(200, body.encode(), f"multipart/mixed; boundary={boundary}",
                           {"OData-Version": "4.0"})  # fmt: skip

    def _changeset(self, request: SimRequest, part: Message) -> tuple[str, bool]:
        undo: list[Callable[[], None]] = []
        answers: list[tuple[str | None, SimResponse]] = []
        members = part.get_payload()
        assert isinstance(members, list)
        for member in members:
            assert isinstance(member, Message)
            response = self._inner(request, member, undo)
            if response.status >= 400:
                for step in reversed(undo):
                    step()
                return _http_part(response, member.get("Content-ID")), False
            answers.append((member.get("Content-ID"), response))
        boundary = f"changesetresponse_{uuid.uuid4()}"
        inner = "".join(f"--{boundary}\r\n{_http_part(r, cid)}\r\n" for cid, r in answers) + f"--{boundary}--"
        return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}", True

    def _inner(
        self, request: SimRequest, part: Message, undo: list[Callable[[], None]] | None
    ) -> SimResponse:
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            return self.error(400, "A batch part must be an application/http request.")
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        lines = head.decode("utf-8", "replace").split("\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rsplit(" ", 1)[0]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        headers.setdefault("authorization", request.headers.get("authorization", ""))
        parts = urlsplit(target)
        path = parts.path if parts.path.startswith("/") else f"{API}/{parts.path}"
        query = {k: ",".join(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        inner = SimRequest(method.upper(), path, query, headers, body.rstrip(b"\n"))
        handlers: dict[str, tuple[str, Callable[..., SimResponse]]] = {
            "PATCH": (rf"{API}/(?P<set>\w+)\((?P<key>[^/]+)\)", self.upsert_row),
            "POST": (rf"{API}/(?P<set>\w+)", self.create_row),
        }
        if inner.method not in handlers:
            return self.error(400, f"{inner.method} is not supported inside $batch by the simulator.")
        pattern, handler = handlers[inner.method]
        match = re.fullmatch(pattern, inner.path)
        if match is None:
            return self.error(404, "The requested resource does not exist", NOT_FOUND)
        inner.match = match
        return handler(inner, undo)


def _http_part(response: SimResponse, content_id: str | None = None) -> str:
    """One answer of a $batch as an application/http part."""
    reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
              412: "Precondition Failed", 429: "Too Many Requests"}.get(response.status, "Error")  # fmt: skip
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    if response.body:
        lines.append(f"Content-Type: {response.content_type}")
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    return head + "\r\n" + "\r\n".join(lines) + "\r\n\r\n" + response.body.decode()
