"""Salesforce REST simulator (HTTPS): OAuth token endpoint, SOQL query/queryAll with nextRecordsUrl
paging, sObject and Collections upsert by external id, JSON-array error envelopes, Sforce-Limit-Info;
CaseComments (IsPublished), case statuses and an agent helper that announces its activity as an Outbound
Message (SOAP notifications) to a URL holding the shared secret. Also the calls a typical integration
makes beyond sync: CRUD by id, COUNT queries, updated/deleted ids, describe, /composite and sObject
Collections (docs/vendors.md lists them with their tests)."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import jwt

from connectors.simulation import (
    LOCALES,
    Row,
    SimRequest,
    SimResponse,
    Table,
    TicketSimulator,
    json_response,
    seed_ts,
)

API = r"/services/data/v(?P<version>\d+\.\d)"
ORG_ID = "00DHb0000000001EAA"
LANGUAGE = {"en": "en_US", "de": "de", "fr": "fr", "es": "es", "ja": "ja"}
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp")

# sObject -> (canonical stream, id prefix, writable fields, required on create)
OBJECTS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "Contact": (
        "contacts",
        "003",
        ("FirstName", "LastName", "Email", "Phone", "MailingCountry", "Locale__c", "AccountId", "Ext_Id__c"),
        ("LastName",),
    ),
    "Account": ("accounts", "001", ("Name", "Website", "BillingCountry", "Industry", "Ext_Id__c"), ("Name",)),
    "Case": (
        "tickets",
        "500",
        (
            "CaseNumber",
            "Subject",
            "Description",
            "Status",
            "Priority",
            "ContactId",
            "Language__c",
            "Ext_Id__c",
            "OwnerId",
        ),
        (),
    ),
    "CaseComment": ("case_comments", "00a", ("ParentId", "CommentBody", "IsPublished"), ("ParentId",)),
    "EmailMessage": (
        "case_emails",
        "02s",
        (
            "ParentId",
            "Subject",
            "TextBody",
            "HtmlBody",
            "Incoming",
            "FromName",
            "FromAddress",
            "ToAddress",
            "Status",
            "MessageDate",
        ),
        ("ParentId",),
    ),
    "Order": (
        "orders",
        "801",
        ("OrderNumber", "Status", "TotalAmount", "CurrencyIsoCode", "AccountId", "EffectiveDate"),
        ("AccountId", "EffectiveDate", "Status"),
    ),
    "Knowledge__kav": (
        "articles",
        "ka0",
        (
            "Title",
            "Body__c",
            "Language",
            "UrlName",
            "PublishStatus",
            "ArticleNumber",
            "KnowledgeArticleId",
            "IsMasterLanguage",
        ),
        ("Title", "UrlName"),
    ),
    "Lead": (
        "leads",
        "00Q",
        ("FirstName", "LastName", "Email", "Company", "LeadSource", "Status", "Ext_Id__c"),
        ("LastName", "Company"),
    ),
}
STREAM_OBJECT = {stream: name for name, (stream, *_rest) in OBJECTS.items()}
#: Fields Salesforce computes (readable in SOQL, never written): a closed status, who wrote a comment.
READ_ONLY: dict[str, tuple[str, ...]] = {
    "Case": ("IsClosed",),
    "CaseComment": ("CreatedById", "CreatedBy.Name"),
}
#: Lookup fields and the object they point at (describe's `referenceTo`).
REFERENCE_FIELDS = {"AccountId": "Account", "ContactId": "Contact", "ParentId": "Case", "OwnerId": "Group",
                    "CreatedById": "User", "KnowledgeArticleId": "Knowledge__ka"}  # fmt: skip
INTEGRATION_USER = ("005Hb0000000001AAA", "Integration User")  # the connected app's user (CreatedBy)
AGENT_USER = ("005Hb0000000002AAA", "Maria Agent")
DEFAULT_QUEUE = "00GHb0000000001AAA"  # the "Support" queue new cases belong to
CLOSED_STATUSES = ("Closed",)
#: What the agent helper's portable states become; any other value is taken as a Case.Status.
AGENT_STATUSES = {"open": "Working", "resolved": "Resolved", "closed": "Closed"}
_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>.+?))?(?:\s+LIMIT\s+(?P<limit>\d+))?"
    r"(?:\s+OFFSET\s+(?P<offset>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
#: `SELECT COUNT() FROM ...` (only totalSize) and `SELECT COUNT(field) [alias] FROM ...` (an AggregateResult).
_COUNT = re.compile(
    r"^\s*SELECT\s+COUNT\(\s*(?P<field>\w*)\s*\)(?:\s+(?P<alias>(?!FROM\b)\w+))?\s+(?P<rest>FROM\s.+)$",
    re.IGNORECASE | re.DOTALL,
)
ROLLED_BACK = "The transaction was rolled back since another operation in the same transaction failed."
_COND = re.compile(
    r"^\s*(\w+)\s*(>=|<=|!=|=|>|<|\bNOT\s+IN\b|\bIN\b|\bLIKE\b)\s*(.+?)\s*$", re.IGNORECASE | re.DOTALL
)
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)$")


def sf_time(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ts))


def sf_id(prefix: str, n: int) -> str:
    return f"{prefix}Hb{n:010d}AAA"


class QueryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SalesforceSimulator(TicketSimulator):
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
        self._tx_lock = threading.RLock()  # composite and all-or-none Collections run one at a time
        self._locators: OrderedDict[str, tuple[list[Row], str, tuple[str, ...]]] = OrderedDict()
        self._locator_seq = 0
        self._next_id: dict[str, int] = {}
        self.jwt_key_path, self.jwt_public_key = self._ensure_jwt_key()
        self._seed()
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

    # --- setup -----------------------------------------------------------------------------------

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

    def _seed(self) -> None:
        for obj, (stream, _prefix, _fields, _req) in OBJECTS.items():
            self.tables[stream] = Table(obj, unique=("Ext_Id__c",))
            self._next_id[obj] = self.counts.get(stream, 0)
        seed, n = self.seed, self.counts
        for i in range(n["accounts"]):
            c = seed.company(i)
            self._add(
                "Account",
                i,
                {
                    "Name": c["name"],
                    "Website": c["website"],
                    "BillingCountry": c["country"],
                    "Industry": c["industry"],
                    "Ext_Id__c": None,
                },
            )
        accounts = max(1, n["accounts"])
        for i in range(n["contacts"]):
            p = seed.person(i)
            self._add(
                "Contact",
                i,
                {
                    "FirstName": p["first_name"],
                    "LastName": p["last_name"],
                    "Email": p["email"],
                    "Phone": p["phone"],
                    "MailingCountry": p["country"],
                    "Locale__c": p["locale"],
                    "AccountId": sf_id("001", p["company_index"] % accounts),
                    "Ext_Id__c": None,
                },
            )
        for i in range(n["tickets"]):
            t = seed.ticket(i)
            self._add(
                "Case",
                i,
                {
                    "CaseNumber": f"{i + 1:08d}",
                    "Subject": t["subject"],
                    "Description": t["description"],
                    "Status": t["status"],
                    "Priority": t["priority"],
                    "ContactId": sf_id("003", t["person_index"] % max(1, n["contacts"])),
                    "Language__c": t["locale"],
                    "Ext_Id__c": None,
                    "OwnerId": DEFAULT_QUEUE,
                },
            )
        for i in range(n["orders"]):
            o = seed.order(i)
            self._add(
                "Order",
                i,
                {
                    "OrderNumber": o["number"],
                    "Status": o["status"],
                    "TotalAmount": o["amount"],
                    "CurrencyIsoCode": o["currency"],
                    "AccountId": sf_id("001", o["company_index"] % accounts),
                    "EffectiveDate": "2024-01-15",
                },
            )
        for i in range(n["articles"]):
            a = seed.article(i)
            self._add(
                "Knowledge__kav",
                i,
                {
                    "Title": a["title"],
                    "Body__c": a["body"],
                    "Language": LANGUAGE[a["locale"]],
                    "UrlName": a["url_name"],
                    "PublishStatus": "Online",
                    # Seed articles come in groups of one per locale: translations share the article's
                    # id and number, and the first is the master language.
                    "ArticleNumber": f"{i // len(LOCALES) + 1:09d}",
                    "KnowledgeArticleId": sf_id("kA0", i // len(LOCALES)),
                    "IsMasterLanguage": i % len(LOCALES) == 0,
                },
            )

    def _add(self, obj: str, i: int, data: dict[str, Any], ts: int | None = None) -> Row:
        stream, prefix, _f, _r = OBJECTS[obj]
        row = Row(sf_id(prefix, i), seed_ts(i) if ts is None else ts, data)
        data["CreatedDate"] = sf_time(row.ts)
        if obj == "Case" and not data.get("CaseNumber"):
            data["CaseNumber"] = f"{i + 1:08d}"  # an auto-number field: Salesforce assigns it
        return self.tables[stream].insert(row)

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

    def _errors(self, status: int, code: str, message: str) -> SimResponse:
        return json_response(status, [{"message": message, "errorCode": code}])

    def error(self, status: int, message: str) -> SimResponse:
        codes = {
            404: "NOT_FOUND",
            500: "UNKNOWN_EXCEPTION",
            502: "SERVER_UNAVAILABLE",
            503: "SERVER_UNAVAILABLE",
        }
        return self._errors(status, codes.get(status, "UNKNOWN_EXCEPTION"), message)

    def rate_limited(self, request: SimRequest) -> SimResponse:
        return self._errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

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

    # --- query ------------------------------------------------------------------------------------

    def _fields_of(self, obj: str) -> set[str]:
        return set(SYSTEM_FIELDS) | set(OBJECTS[obj][2]) | {"CreatedDate"} | set(READ_ONLY.get(obj, ()))

    def _value(self, row: Row, field: str) -> Any:
        if field == "Id":
            return row.id
        if field == "IsClosed":
            return row.data.get("Status") in CLOSED_STATUSES
        if field == "CreatedBy.Name":
            return row.data.get("_created_by_name")
        if field in ("SystemModstamp", "LastModifiedDate"):
            return sf_time(row.ts)
        if field == "IsDeleted":
            return row.deleted
        return row.data.get(field)

    def _literal(self, text: str) -> Any:
        text = text.strip()
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("\\'", "'")
        if _DATETIME.match(text):
            return sf_time(int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()))
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text.lower() == "null":
            return None
        try:
            return float(text) if "." in text else int(text)
        except ValueError:
            raise QueryError("MALFORMED_QUERY", f"unexpected token: '{text}'") from None

    def _run_soql(self, soql: str, *, include_deleted: bool) -> tuple[str, tuple[str, ...], list[Row]]:
        m = _SOQL.match(soql)
        if not m:
            raise QueryError("MALFORMED_QUERY", f"unexpected token in query: {soql[:60]}")
        obj = m.group("obj")
        canonical = {name.lower(): name for name in OBJECTS}
        if obj.lower() not in canonical:
            raise QueryError("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        obj = canonical[obj.lower()]
        known = {f.lower(): f for f in self._fields_of(obj)}
        fields: list[str] = []
        for raw in m.group("fields").split(","):
            name = raw.strip()
            if name.lower() not in known:
                raise QueryError("INVALID_FIELD", f"No such column '{name}' on entity '{obj}'.")
            fields.append(known[name.lower()])
        table = self.tables[OBJECTS[obj][0]]
        groups: list[list[tuple[str, str, Any]]] = []  # OR of ANDs, no parentheses
        lower_ts: str | None = None
        for alternative in _split_outside_quotes(m.group("where") or "", "OR"):
            conditions: list[tuple[str, str, Any]] = []
            for part in _split_outside_quotes(alternative, "AND"):
                cm = _COND.match(part)
                if not cm:
                    raise QueryError("MALFORMED_QUERY", f"unexpected token: '{part.strip()[:60]}'")
                name, op, raw_value = cm.group(1), re.sub(r"\s+", " ", cm.group(2).upper()), cm.group(3)
                if name.lower() not in known:
                    raise QueryError("INVALID_FIELD", f"No such column '{name}' on entity '{obj}'.")
                if op in ("IN", "NOT IN"):
                    value: Any = [self._literal(v) for v in raw_value.strip("() ").split(",")]
                else:
                    value = self._literal(raw_value)
                field = known[name.lower()]
                if field in ("SystemModstamp", "LastModifiedDate") and op in (">=", ">"):
                    lower_ts = value
                conditions.append((field, op, value))
            if conditions:
                groups.append(conditions)
        start = None
        if lower_ts is not None and len(groups) == 1:  # with OR the bound may not hold for every row
            start = int(dt.datetime.fromisoformat(lower_ts.replace("+0000", "+00:00")).timestamp())
        rows = table.since(start)
        if not include_deleted:
            rows = [r for r in rows if not r.deleted]
        if groups:
            rows = [
                r for r in rows
                if any(all(_compare(self._value(r, f), op, v) for f, op, v in group) for group in groups)
            ]  # fmt: skip
        order = (m.group("order") or "").replace(" ", "").lower()
        if order and order not in ("systemmodstamp,id", "systemmodstamp", "lastmodifieddate,id", "id"):
            keys = [
                known.get(k.strip().split()[0].lower(), "Id") for k in (m.group("order") or "").split(",")
            ]
            rows.sort(key=lambda r: tuple(str(self._value(r, k) or "") for k in keys))
        elif order == "id":
            rows.sort(key=lambda r: r.id)
        if m.group("offset"):
            if int(m.group("offset")) > 2000:
                raise QueryError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
            rows = rows[int(m.group("offset")) :]
        if m.group("limit"):
            rows = rows[: int(m.group("limit"))]
        return obj, tuple(fields), rows

    def _row_json(self, obj: str, fields: tuple[str, ...], row: Row) -> bytes:
        cached = row.cache.get(fields)
        if cached is None:
            payload: dict[str, Any] = {
                "attributes": {"type": obj, "url": f"/services/data/v59.0/sobjects/{obj}/{row.id}"}
            }
            for f in fields:
                if f == "CreatedBy.Name":  # a relationship field comes back as a nested record
                    user = {
                        "type": "User",
                        "url": f"/services/data/v59.0/sobjects/User/{row.data.get('CreatedById')}",
                    }
                    payload["CreatedBy"] = {"attributes": user, "Name": self._value(row, f)}
                else:
                    payload[f] = self._value(row, f)
            cached = row.cache[fields] = json.dumps(
                payload, ensure_ascii=False, separators=(",", ":")
            ).encode()
        return cached

    def _batch_size(self, request: SimRequest) -> int:
        options = request.headers.get("sforce-query-options", "")
        m = re.search(r"batchSize=(\d+)", options)
        size = int(m.group(1)) if m else int(request.query.get("batchSize", 2000))
        return max(200, min(2000, size))

    def _page(self, request: SimRequest, locator: str, offset: int) -> SimResponse:
        try:
            rows, obj, fields = self._locators[locator]
        except KeyError:
            return self._errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        size = self._batch_size(request)
        chunk = rows[offset : offset + size]
        end = offset + len(chunk)
        done = end >= len(rows)
        head = f'{{"totalSize":{len(rows)},"done":{"true" if done else "false"},'
        if not done:
            head += f'"nextRecordsUrl":"/services/data/v59.0/query/{locator}-{end}",'
        else:
            self._locators.pop(locator, None)
        body = (
            head.encode() + b'"records":[' + b",".join(self._row_json(obj, fields, r) for r in chunk) + b"]}"
        )
        return SimResponse(200, body)

    def query(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        include_deleted = request.match.group("endpoint") == "queryAll"
        counted = _COUNT.match(request.query.get("q", ""))
        if counted:
            return self._count(counted, include_deleted=include_deleted)
        try:
            obj, fields, rows = self._run_soql(request.query.get("q", ""), include_deleted=include_deleted)
        except QueryError as exc:
            return self._errors(400, exc.code, str(exc))
        self._locator_seq += 1
        locator = f"01gHb{self._locator_seq:010d}"
        self._locators[locator] = (rows, obj, fields)
        while len(self._locators) > 200:
            self._locators.popitem(last=False)
        return self._page(request, locator, 0)

    def query_more(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        return self._page(request, request.match.group("locator"), int(request.match.group("offset")))

    # --- sObjects ---------------------------------------------------------------------------------

    def describe_object(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj = request.match.group("obj")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        fields = [self._describe_field(obj, f) for f in sorted(self._fields_of(obj)) if "." not in f]
        _stream, prefix, _w, _r = OBJECTS[obj]
        base = f"/services/data/v59.0/sobjects/{obj}"
        return json_response(200, {
            "name": obj, "label": obj, "keyPrefix": prefix, "custom": obj.endswith(("__c", "__kav")),
            "createable": True, "updateable": True, "deletable": True, "queryable": True, "fields": fields,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        })  # fmt: skip

    @staticmethod
    def _describe_field(obj: str, name: str) -> dict[str, Any]:
        """One field of a describe: its type from its name (ids, references, e-mail, phone, booleans,
        dates, amounts; text otherwise), and what the integration user may do with it."""
        writable, required = OBJECTS[obj][2], OBJECTS[obj][3]
        reference = REFERENCE_FIELDS.get(name)
        if name == "Id":
            kind = "id"
        elif reference:
            kind = "reference"
        elif name in ("Email", "FromAddress", "ToAddress"):
            kind = "email"
        elif name == "Phone":
            kind = "phone"
        elif name.startswith("Is") or name == "Incoming":
            kind = "boolean"
        elif name in ("CreatedDate", "LastModifiedDate", "SystemModstamp", "MessageDate"):
            kind = "datetime"
        elif name == "EffectiveDate":
            kind = "date"
        elif name == "TotalAmount":
            kind = "currency"
        elif name in ("Body__c", "Description", "CommentBody", "TextBody", "HtmlBody"):
            kind = "textarea"
        else:
            kind = "string"
        return {
            "name": name, "label": name.removesuffix("__c").replace("_", " "), "type": kind,
            "length": 255 if kind in ("string", "email", "phone") else 0, "custom": name.endswith("__c"),
            "externalId": name == "Ext_Id__c", "idLookup": name in ("Id", "Ext_Id__c"),
            "unique": name == "Ext_Id__c", "createable": name in writable, "updateable": name in writable,
            "nillable": name not in required and name != "Id" and kind != "boolean",
            "filterable": True, "sortable": kind != "textarea",
            "referenceTo": [reference] if reference else [],
        }  # fmt: skip

    def _validate(self, obj: str, data: dict[str, Any], *, creating: bool) -> list[dict[str, Any]]:
        writable = OBJECTS[obj][2]
        unknown = [f for f in data if f not in writable]
        if unknown:
            return [
                {
                    "statusCode": "INVALID_FIELD",
                    "message": f"No such column '{unknown[0]}' on sobject of type {obj}",
                    "fields": unknown,
                }
            ]
        missing = [f for f in OBJECTS[obj][3] if creating and not data.get(f)]
        if missing:
            return [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": f"Required fields are missing: [{', '.join(missing)}]",
                    "fields": missing,
                }
            ]
        return []

    def _upsert(self, obj: str, field: str, value: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        table = self.tables[OBJECTS[obj][0]]
        data = {k: v for k, v in data.items() if k != "attributes"}
        with table.lock:
            if field == "Id":
                row = table.rows.get(value)
                if row is None:
                    return 404, {
                        "errorCode": "NOT_FOUND",
                        "message": "Provided external ID field does not exist",
                    }
            else:
                row = table.find(field, value)
            data[field] = value if field != "Id" else data.pop("Id", value)
            data.pop("Id", None)
            errors = self._validate(obj, data, creating=row is None)
            if errors:
                return 400, {"id": None, "success": False, "errors": errors}
            if row is not None:
                table.update(row.id, data)
                return 200, {"id": row.id, "success": True, "errors": [], "created": False}
            n = self._next_id[obj]
            self._next_id[obj] += 1
            new = self._add(obj, n, dict(data), ts=max(int(time.time()), 0))
            return 201, {"id": new.id, "success": True, "errors": [], "created": True}

    def upsert_one(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, field = request.match.group("obj"), request.match.group("field")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if field not in ("Id", "Ext_Id__c"):
            return self._errors(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        status, result = self._upsert(obj, field, request.match.group("value"), request.json() or {})
        if status >= 400:
            errors = result.get("errors") or [result]
            return json_response(
                status,
                [
                    {
                        "message": e["message"],
                        "errorCode": e.get("statusCode", e.get("errorCode")),
                        "fields": e.get("fields", []),
                    }
                    for e in errors
                ],
            )
        return json_response(status, result)

    def upsert_many(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, field = request.match.group("obj"), request.match.group("field")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if field not in ("Id", "Ext_Id__c"):
            return self._errors(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        body = request.json() or {}
        records = body.get("records") or []
        if len(records) > 200:
            return self._errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        results = []
        for record in records:
            if (record.get("attributes") or {}).get("type") != obj:
                results.append(
                    {
                        "id": None,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "INVALID_TYPE",
                                "message": "attributes.type must match the URL sObject",
                                "fields": [],
                            }
                        ],
                    }
                )
                continue
            value = record.get(field)
            if not value:
                results.append(
                    {
                        "id": None,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "MISSING_ARGUMENT",
                                "message": f"{field} not specified",
                                "fields": [field],
                            }
                        ],
                    }
                )
                continue
            _status, result = self._upsert(obj, field, str(value), dict(record))
            results.append(result)
        return json_response(200, results)

    def create(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj = request.match.group("obj")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        data = request.json() or {}
        errors = self._validate(obj, data, creating=True)
        if errors:
            return json_response(
                400,
                [
                    {"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}
                    for e in errors
                ],
            )
        if obj == "CaseComment":
            parent = self.tables["tickets"].rows.get(str(data.get("ParentId")))
            if parent is None or parent.deleted:
                message = "Parent ID: id value of incorrect type: " + str(data.get("ParentId"))[:18]
                return self._errors(400, "FIELD_INTEGRITY_EXCEPTION", message)
            row = self.case_comment_add(
                parent.id, str(data.get("CommentBody") or ""), public=data.get("IsPublished") is True,
                user=INTEGRATION_USER,
            )  # fmt: skip
            return json_response(201, {"id": row.id, "success": True, "errors": []})
        n = self._next_id[obj]
        self._next_id[obj] += 1
        row = self._add(obj, n, dict(data), ts=int(time.time()))
        return json_response(201, {"id": row.id, "success": True, "errors": []})

    # --- case comments, the agent helper and outbound messages ----------------------------------

    def case_comment_add(
        self, case_id: str, body: str, *, public: bool, user: tuple[str, str], ts: int | None = None
    ) -> Row:
        """Add a CaseComment to a case (stamped now, or at `ts`); the case's SystemModstamp moves too."""
        table = self.tables["case_comments"]
        with table.lock:
            n = self._next_id["CaseComment"]
            self._next_id["CaseComment"] += 1
        data = {"ParentId": case_id, "CommentBody": body, "IsPublished": public, "CreatedById": user[0],
                "_created_by_name": user[1]}  # fmt: skip
        row = self._add("CaseComment", n, data, ts=int(time.time()) if ts is None else ts)
        self.tables["tickets"].update(case_id, {})
        return row

    def case_email_add(
        self,
        case_id: str,
        text: str,
        *,
        incoming: bool,
        from_name: str,
        html: str = "",
        ts: int | None = None,
    ) -> Row:
        """Add an EmailMessage to a case (Email-to-Case): incoming from the customer, or sent by an agent."""
        table = self.tables["case_emails"]
        with table.lock:
            n = self._next_id["EmailMessage"]
            self._next_id["EmailMessage"] += 1
        stamp = int(time.time()) if ts is None else ts
        data = {"ParentId": case_id, "Subject": "Re: your case", "TextBody": text, "HtmlBody": html,
                "Incoming": incoming, "FromName": from_name, "Status": "0" if incoming else "3",
                "MessageDate": sf_time(stamp)}  # fmt: skip
        row = self._add("EmailMessage", n, data, ts=stamp)
        self.tables["tickets"].update(case_id, {})
        return row

    def case_comments(self, case_id: str) -> list[Row]:
        """The case's comments, oldest first."""
        return [r for r in self.tables["case_comments"].since() if r.data["ParentId"] == case_id]

    def case(self, ticket: str) -> Row:
        """Find a case by Id, CaseNumber or external id (Ext_Id__c); KeyError when there is none."""
        return self.ticket_row(self.tables["tickets"], ticket, external="Ext_Id__c", number="CaseNumber")

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        self.agent_check(body, state)
        row = self.case(ticket)
        entry = None
        if body.strip():
            user = (AGENT_USER[0], author or AGENT_USER[1])
            entry = self.case_comment_add(row.id, body, public=public, user=user)
        if state:
            self.tables["tickets"].update(row.id, {"Status": AGENT_STATUSES.get(state, state)})
        return {
            "ticket": row.id,
            "number": row.data.get("CaseNumber"),
            "comment_id": entry.id if entry else None,
            "state": row.data.get("Status"),
            "webhook": self.announce(row),
        }

    def announce(self, case: Row) -> dict[str, Any]:
        """An Outbound Message for the changed case: SOAP `notifications` with the org id and one
        Notification (its Id is what the receiver de-duplicates by); no signature, the registered URL
        carries the shared secret. Salesforce wants `<Ack>true</Ack>` back (else it retries)."""
        note_id = "04l" + uuid.uuid4().hex[:15]
        fields = "".join(
            f"<sf:{name}>{escape(str(case.data.get(name) or ''))}</sf:{name}>"
            for name in ("CaseNumber", "Status")
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body>"
            '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
            f"<OrganizationId>{ORG_ID}</OrganizationId>"
            "<ActionId>04kHb0000000001AAA</ActionId>"
            '<SessionId xsi:nil="true"/>'
            f"<EnterpriseUrl>{self.base_url}/services/Soap/c/59.0/{ORG_ID[:15]}</EnterpriseUrl>"
            f"<PartnerUrl>{self.base_url}/services/Soap/u/59.0/{ORG_ID[:15]}</PartnerUrl>"
            f"<Notification><Id>{note_id}</Id>"
            '<sObject xsi:type="sf:Case" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>{case.id}</sf:Id>{fields}</sObject></Notification>"
            "</notifications></soapenv:Body></soapenv:Envelope>"
        ).encode()
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        return self.send_webhook(note_id, body, headers)

    def get_record(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, row_id = request.match.group("obj"), request.match.group("id")
        row = self.tables[OBJECTS[obj][0]].rows.get(row_id) if obj in OBJECTS else None
        if row is None or row.deleted:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        return SimResponse(200, self._row_json(obj, self._get_fields(obj, request), row))

    def delete_record(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, row_id = request.match.group("obj"), request.match.group("id")
        table = self.tables[OBJECTS[obj][0]] if obj in OBJECTS else None
        if table is None or row_id not in table.rows:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if table.rows[row_id].deleted:
            return self._errors(404, "ENTITY_IS_DELETED", "entity is deleted")
        self.delete(OBJECTS[obj][0], row_id)
        return SimResponse(204, b"")

    # --- fidelity: count queries, CRUD by id, describe, composite and sObject Collections ------------

    def _count(self, counted: re.Match[str], *, include_deleted: bool) -> SimResponse:
        """COUNT() answers only totalSize (no records); COUNT(field) one AggregateResult row (expr0)."""
        field = counted.group("field")
        try:
            _obj, _fields, rows = self._run_soql(
                f"SELECT {field or 'Id'} {counted.group('rest')}", include_deleted=include_deleted
            )
        except QueryError as exc:
            return self._errors(400, exc.code, str(exc))
        if not field:
            return json_response(200, {"totalSize": len(rows), "done": True, "records": []})
        value = sum(1 for r in rows if self._value(r, field) not in (None, ""))
        record = {"attributes": {"type": "AggregateResult"}, counted.group("alias") or "expr0": value}
        return json_response(200, {"totalSize": 1, "done": True, "records": [record]})

    def _record_errors(self, status: int, errors: list[dict[str, Any]]) -> SimResponse:
        return json_response(
            status,
            [
                {"message": e["message"], "errorCode": e["statusCode"], "fields": e.get("fields", [])}
                for e in errors
            ],
        )

    def _live(self, obj: str, row_id: str) -> tuple[Row | None, SimResponse | None]:
        """The record, or the answer Salesforce gives for an unknown type, an unknown id or a deleted row."""
        if obj not in OBJECTS:
            return None, self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        row = self.tables[OBJECTS[obj][0]].rows.get(row_id)
        if row is None:
            return None, self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if row.deleted:
            return None, self._errors(404, "ENTITY_IS_DELETED", "entity is deleted")
        return row, None

    def update_record(self, request: SimRequest) -> SimResponse:
        """PATCH /sobjects/{type}/{id}: 204 without a body (simple-salesforce's `sf.Contact.update`)."""
        assert request.match is not None
        obj = request.match.group("obj")
        row, denied = self._live(obj, request.match.group("id"))
        if denied is not None or row is None:
            return denied or self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        try:
            data = request.json()
        except ValueError:
            return self._errors(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(data, dict):
            return self._errors(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        errors = self._validate(obj, data, creating=False)
        if errors:
            return self._record_errors(400, errors)
        self.tables[OBJECTS[obj][0]].update(row.id, data)
        return SimResponse(204, b"")

    def get_by_external_id(self, request: SimRequest) -> SimResponse:
        """GET /sobjects/{type}/{externalIdField}/{value} (simple-salesforce's `get_by_custom_id`)."""
        assert request.match is not None
        obj, field, value = (request.match.group(g) for g in ("obj", "field", "value"))
        if obj not in OBJECTS or field not in ("Id", "Ext_Id__c"):
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        table = self.tables[OBJECTS[obj][0]]
        row = table.rows.get(value) if field == "Id" else table.find(field, value)
        if row is None or row.deleted:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        return SimResponse(200, self._row_json(obj, self._get_fields(obj, request), row))

    def _get_fields(self, obj: str, request: SimRequest) -> tuple[str, ...]:
        known = {f.lower(): f for f in self._fields_of(obj) if "." not in f}
        wanted = [
            known[f.strip().lower()]
            for f in request.query.get("fields", "").split(",")
            if f.strip().lower() in known
        ]
        return tuple(wanted) if wanted else tuple(sorted(known.values()))

    def changed_ids(self, request: SimRequest) -> SimResponse:
        """GET /sobjects/{type}/updated|deleted/?start=&end=: ids changed in a window of the last 30 days
        (deleted: of the recycle bin's 15), covered up to `end` or now, whichever is earlier."""
        assert request.match is not None
        obj, which = request.match.group("obj"), request.match.group("which")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        try:
            start, end = (
                dt.datetime.fromisoformat(request.query[k].replace("Z", "+00:00")) for k in ("start", "end")
            )
        except (KeyError, ValueError):
            return self._errors(
                400, "INVALID_QUERY_PARAMETER_VALUE", "start and end must be ISO 8601 date-times"
            )
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            return self._errors(
                400, "INVALID_QUERY_PARAMETER_VALUE", "end must be after start, both with a zone"
            )
        now = int(time.time())
        if start.timestamp() < now - 30 * 86400:
            return self._errors(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
        covered = int(min(end.timestamp(), now))
        rows = [r for r in self.tables[OBJECTS[obj][0]].since(int(start.timestamp())) if r.ts <= covered]
        if which == "updated":
            ids = [r.id for r in rows if not r.deleted]
            return json_response(200, {"ids": ids, "latestDateCovered": sf_time(covered)})
        deleted = [{"id": r.id, "deletedDate": sf_time(r.ts)} for r in rows if r.deleted]
        earliest = sf_time(now - 15 * 86400)
        return json_response(200, {"deletedRecords": deleted, "earliestDateAvailable": earliest,
                                   "latestDateCovered": sf_time(covered)})  # fmt: skip

    def describe_global(self, request: SimRequest) -> SimResponse:
        """GET /sobjects: every object with its key prefix and capabilities."""
        base = "/services/data/v59.0/sobjects"
        objects = [
            {
                "name": obj, "label": obj, "keyPrefix": prefix, "custom": obj.endswith("__kav"),
                "queryable": True, "createable": True, "updateable": True, "deletable": True,
                "retrieveable": True, "searchable": True,
                "urls": {"sobject": f"{base}/{obj}", "describe": f"{base}/{obj}/describe",
                         "rowTemplate": f"{base}/{obj}/{{ID}}"},
            }
            for obj, (_stream, prefix, _w, _r) in OBJECTS.items()
        ]  # fmt: skip
        return json_response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})

    def _transaction(self) -> list[tuple[Table, Any]]:
        return [(table, table.snapshot()) for table in self.tables.values()]

    @staticmethod
    def _rollback(snapshots: list[tuple[Table, Any]]) -> None:
        for table, snap in snapshots:
            table.restore(snap)

    def _collection_body(self, request: SimRequest) -> tuple[dict[str, Any] | None, SimResponse | None]:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return None, self._errors(400, "JSON_PARSER_ERROR", "Expected {allOrNone, records: [...]}")
        if len(body["records"]) > 200:
            return None, self._errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        return body, None

    def _collection(self, records: list[Any], all_or_none: bool, one: Any) -> SimResponse:
        """Run `one(record) -> result` per record; with allOrNone, one failure rolls every record back."""
        with self._tx_lock:
            snapshots = self._transaction() if all_or_none else []
            results = [one(record) for record in records]
            if all_or_none and not all(r["success"] for r in results):
                self._rollback(snapshots)
                rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "fields": [],
                          "message": "Record rolled back because not all records were valid and the request "
                                     "was using AllOrNone header"}  # fmt: skip
                results = [
                    r if not r["success"] else {"id": None, "success": False, "errors": [rolled]}
                    for r in results
                ]
        return json_response(200, results)

    @staticmethod
    def _failed(
        code: str, message: str, fields: list[str] | None = None, row_id: str | None = None
    ) -> dict[str, Any]:
        return {
            "id": row_id,
            "success": False,
            "errors": [{"statusCode": code, "message": message, "fields": fields or []}],
        }

    def _create_one(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            return self._failed("JSON_PARSER_ERROR", "Each record must be a JSON object")
        obj = (record.get("attributes") or {}).get("type")
        if obj not in OBJECTS or obj == "CaseComment":
            return self._failed("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        data = {k: v for k, v in record.items() if k != "attributes"}
        if "Id" in data:
            return self._failed("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        errors = self._validate(obj, data, creating=True)
        if errors:
            return {"id": None, "success": False, "errors": errors}
        with self.tables[OBJECTS[obj][0]].lock:
            n = self._next_id[obj]
            self._next_id[obj] += 1
        row = self._add(obj, n, data, ts=int(time.time()))
        return {"id": row.id, "success": True, "errors": []}

    def _update_one(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            return self._failed("JSON_PARSER_ERROR", "Each record must be a JSON object")
        obj = (record.get("attributes") or {}).get("type")
        row_id = str(record.get("Id") or "")
        if obj not in OBJECTS:
            return self._failed("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        if not row_id:
            return self._failed("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        row = self.tables[OBJECTS[obj][0]].rows.get(row_id)
        if row is None:
            return self._failed("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [], row_id)
        if row.deleted:
            return self._failed("ENTITY_IS_DELETED", "entity is deleted", [], row_id)
        data = {k: v for k, v in record.items() if k not in ("attributes", "Id")}
        errors = self._validate(obj, data, creating=False)
        if errors:
            return {"id": row_id, "success": False, "errors": errors}
        self.tables[OBJECTS[obj][0]].update(row_id, data)
        return {"id": row_id, "success": True, "errors": []}

    def _delete_one(self, row_id: Any) -> dict[str, Any]:
        for stream, *_rest in OBJECTS.values():
            row = self.tables[stream].rows.get(str(row_id))
            if row is not None:
                if row.deleted:
                    return self._failed("ENTITY_IS_DELETED", "entity is deleted", [], row.id)
                self.delete(stream, row.id)
                return {"id": row.id, "success": True, "errors": []}
        return self._failed("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [], str(row_id))

    def collection_create(self, request: SimRequest) -> SimResponse:
        """POST /composite/sobjects: create up to 200 records of any types, results in request order."""
        body, denied = self._collection_body(request)
        if body is None:
            return denied or self._errors(400, "JSON_PARSER_ERROR", "bad body")
        return self._collection(body["records"], bool(body.get("allOrNone")), self._create_one)

    def collection_update(self, request: SimRequest) -> SimResponse:
        """PATCH /composite/sobjects: update up to 200 records by Id."""
        body, denied = self._collection_body(request)
        if body is None:
            return denied or self._errors(400, "JSON_PARSER_ERROR", "bad body")
        return self._collection(body["records"], bool(body.get("allOrNone")), self._update_one)

    def collection_delete(self, request: SimRequest) -> SimResponse:
        """DELETE /composite/sobjects?ids=a,b&allOrNone=true: delete up to 200 records by Id."""
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids:
            return self._errors(400, "MISSING_ARGUMENT", "ids not specified")
        if len(ids) > 200:
            return self._errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        return self._collection(
            ids, request.query.get("allOrNone", "false").lower() == "true", self._delete_one
        )

    def collection_get(self, request: SimRequest) -> SimResponse:
        """GET /composite/sobjects/{type}?ids=..&fields=..: the records in order, null where none."""
        assert request.match is not None
        obj = request.match.group("obj")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids or not request.query.get("fields"):
            return self._errors(400, "MISSING_ARGUMENT", "ids and fields are required")
        fields = self._get_fields(obj, request)
        table = self.tables[OBJECTS[obj][0]]
        parts = []
        for row_id in ids[:2000]:
            row = table.rows.get(row_id)
            parts.append(b"null" if row is None or row.deleted else self._row_json(obj, fields, row))
        return SimResponse(200, b"[" + b",".join(parts) + b"]")

    def composite(self, request: SimRequest) -> SimResponse:
        """POST /composite: up to 25 subrequests in order, `@{referenceId.field}` resolved from earlier
        answers; with allOrNone a failure rolls everything back (PROCESSING_HALTED for the others)."""
        try:
            body = request.json()
        except ValueError:
            body = None
        subs = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs:
            return self._errors(400, "JSON_PARSER_ERROR", "Expected {allOrNone, compositeRequest: [...]}")
        if len(subs) > 25:
            return self._errors(
                400, "INVALID_BATCH_REQUEST", "Composite request may contain at most 25 subrequests"
            )
        all_or_none = bool(body.get("allOrNone"))
        answers: dict[str, Any] = {}
        results: list[dict[str, Any]] = []
        with self._tx_lock:
            snapshots = self._transaction() if all_or_none else []
            failed = False
            for sub in subs:
                ref = str((sub or {}).get("referenceId") or "") if isinstance(sub, dict) else ""
                if failed and all_or_none:
                    results.append(_halted(ref, ROLLED_BACK))
                    continue
                if (
                    not isinstance(sub, dict)
                    or not ref
                    or not str(sub.get("url") or "").startswith("/services/data/")
                ):
                    results.append(
                        _halted(
                            ref, "Each subrequest needs a method, a /services/data/ url and a referenceId"
                        )
                    )
                    failed = True
                    continue
                try:
                    url = _resolve(str(sub["url"]), answers)
                    sub_body = _resolve(sub.get("body"), answers)
                except KeyError as exc:
                    results.append(
                        _halted(
                            ref, f"Invalid reference specified. No value for {exc.args[0]} found in {ref}."
                        )
                    )
                    failed = True
                    continue
                answer = self._subrequest(request, str(sub.get("method") or "GET").upper(), url, sub_body)
                payload = json.loads(answer.body) if answer.body else None
                headers = {}
                if answer.status == 201 and isinstance(payload, dict) and payload.get("id"):
                    headers["Location"] = f"{url.rstrip('/')}/{payload['id']}"
                results.append(
                    {
                        "body": payload,
                        "httpHeaders": headers,
                        "httpStatusCode": answer.status,
                        "referenceId": ref,
                    }
                )
                if answer.status >= 400:
                    failed = True
                else:
                    answers[ref] = payload
            if failed and all_or_none:
                self._rollback(snapshots)
                results = [
                    r if r["httpStatusCode"] >= 400 else _halted(r["referenceId"], ROLLED_BACK)
                    for r in results
                ]
        return json_response(200, {"compositeResponse": results})

    def _subrequest(self, request: SimRequest, method: str, url: str, body: Any) -> SimResponse:
        path, _, query = url.partition("?")
        sub = SimRequest(method, path, {k: v[0] for k, v in parse_qs(query).items()}, request.headers,
                         b"" if body is None else json.dumps(body).encode())  # fmt: skip
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path) if route_method == method else None
            if match and handler not in (self.composite, self.token):
                sub.match = match
                return handler(sub)
        return self._errors(404, "NOT_FOUND", "The requested resource does not exist")


def _halted(ref: str, message: str) -> dict[str, Any]:
    return {"body": [{"errorCode": "PROCESSING_HALTED", "message": message}], "httpHeaders": {},
            "httpStatusCode": 400, "referenceId": ref}  # fmt: skip


_REFERENCE = re.compile(r"@\{(?P<ref>\w+)\.(?P<path>[\w.\[\]]+)\}")


def _resolve(value: Any, answers: dict[str, Any]) -> Any:
    """Replace `@{referenceId.path}` (path: dotted keys, `[n]` indexes) with values of earlier answers."""
    if isinstance(value, dict):
        return {k: _resolve(v, answers) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, answers) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(m: re.Match[str]) -> str:
        ref = m.group("ref")
        if ref not in answers:
            raise KeyError(ref)
        found: Any = answers[ref]
        for part in re.findall(r"\w+|\[\d+\]", m.group("path")):
            try:
                found = found[int(part[1:-1])] if part.startswith("[") else found[part]
            except (KeyError, IndexError, TypeError):
                raise KeyError(m.group(0)) from None
        return str(found)

    return _REFERENCE.sub(lookup, value)


def _split_outside_quotes(text: str, word: str) -> list[str]:
    """Split a WHERE clause on AND/OR, but not inside a quoted literal ('Smith AND Sons')."""
    parts = re.split(rf"\s+{word}\s+(?=(?:[^']*'[^']*')*[^']*$)", text, flags=re.IGNORECASE)
    return [p for p in parts if p.strip()]


def _like(left: Any, pattern: Any) -> bool:
    """SOQL LIKE: % any run, _ one character, case-insensitive."""
    if left is None or not isinstance(pattern, str):
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, str(left), re.IGNORECASE | re.DOTALL) is not None


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "IN":
        return left in right
    if op == "NOT IN":
        return left not in right
    if op == "LIKE":
        return _like(left, right)
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if left is None or right is None:
        return False
    if op == ">=":
        return bool(left >= right)
    if op == ">":
        return bool(left > right)
    if op == "<=":
        return bool(left <= right)
    return bool(left < right)
