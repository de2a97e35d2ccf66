"""HubSpot CRM v3 simulator: bearer tokens (private app and OAuth refresh), list paging with `after`,
search with the 10,000-result cap, batch upsert with idProperty and 207 partial failures, 429 policies;
engagements on tickets (notes and e-mails, associations v4, batch read, reads by idProperty) and an
agent helper that announces its activity as signed webhook v3 events (ticket.propertyChange)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any
from xml.sax.saxutils import escape

from connectors.simulation import Row, SimRequest, SimResponse, Table, TicketSimulator, json_response, seed_ts

OBJECTS = {  # canonical stream -> object type
    "contacts": "contacts",
    "accounts": "companies",
    "tickets": "tickets",
    "orders": "orders",
    "leads": "leads",
}
PROPERTIES = {
    "contacts": (
        "email",
        "firstname",
        "lastname",
        "phone",
        "country",
        "hs_language",
        "company",
        "hub_external_id",
    ),
    "companies": ("name", "domain", "country", "industry", "hub_external_id"),
    "tickets": (
        "subject",
        "content",
        "hs_pipeline",
        "hs_pipeline_stage",
        "hs_ticket_priority",
        "hub_external_id",
    ),
    "notes": ("hs_note_body", "hs_timestamp", "hubspot_owner_id"),
    "emails": (
        "hs_email_text",
        "hs_email_html",
        "hs_email_direction",
        "hs_email_subject",
        "hs_email_status",
        "hs_email_headers",
        "hs_timestamp",
        "hubspot_owner_id",
    ),
    "orders": ("hs_order_name", "hs_pipeline_stage", "hs_total_price", "hs_currency_code"),
    "leads": ("hs_lead_name", "email", "firstname", "lastname", "company", "hub_external_id"),
}
UNIQUE = {
    "contacts": ("email", "hub_external_id"),
    "companies": ("hub_external_id",),
    "tickets": ("hub_external_id",),
    "orders": (),
    "leads": ("hub_external_id",),
    "notes": (),
    "emails": (),
}
ENGAGEMENTS = ("notes", "emails")
#: HubSpot-defined association type ids: (from, to) -> typeId.
ASSOCIATION_TYPES = {("notes", "tickets"): 228, ("tickets", "notes"): 227,
                     ("emails", "tickets"): 224, ("tickets", "emails"): 223}  # fmt: skip
#: The default ticket pipeline ("0"): 1 new, 2 waiting on contact, 3 waiting on us, 4 closed.
AGENT_STAGES = {"open": "3", "resolved": "4", "closed": "4"}
DEFAULT_PIPELINE = ("0", [("1", "New", "OPEN"), ("2", "Waiting on contact", "OPEN"),
                          ("3", "Waiting on us", "OPEN"), ("4", "Closed", "CLOSED")])  # fmt: skip
#: Properties HubSpot refuses to create an object without.
REQUIRED_ON_CREATE = {
    "tickets": ("hs_pipeline_stage",),
    "notes": ("hs_timestamp",),
    "emails": ("hs_timestamp",),
}
PORTAL_ID = 62515
APP_ID = 1160452
DAILY_LIMIT = 1_000_000


def iso_ms(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def modified_property(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def _ms(value: Any) -> int:
    """Filter values arrive as epoch milliseconds or ISO strings."""
    text = str(value)
    if text.isdigit():
        return int(text)
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class HubSpotSimulator(TicketSimulator):
    vendor = "hubspot"
    private_app_token = "pat-na1-11111111-2222-3333-4444-555555555555"  # noqa: S105 - demo portal token
    client_id = "hs-sim-client"
    client_secret = "hs-sim-secret-0001"  # noqa: S105
    refresh_token = "hs-sim-refresh-0001"  # noqa: S105
    payload_keys = ("results",)

    def __init__(self, *, search_cap: int = 10_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens.ttl = 1800
        self.search_cap = search_cap
        self.daily_used = 0
        self._next_id = 90_000_000
        self.by_type: dict[str, Table] = {}
        #: (object type, id) -> associated (object type, id, association type id), both directions.
        self.associations: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        self._id_lock = threading.Lock()
        #: Ticket pipelines: id -> [(stage id, label, ticketState)] in display order.
        self.pipelines: dict[str, list[tuple[str, str, str]]] = {DEFAULT_PIPELINE[0]: DEFAULT_PIPELINE[1]}
        self._seed()
        self.route("POST", r"/oauth/v1/token", self.oauth)
        self.route("GET", r"/crm/v3/properties/(?P<type>\w+)", self.properties)
        self.route("GET", r"/crm/v3/objects/(?P<type>\w+)", self.list_page)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)", self.create)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)/search", self.search)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)/batch/upsert", self.batch_upsert)
        self.route("POST", r"/crm/v3/objects/(?P<type>\w+)/batch/read", self.batch_read)
        self.route("POST", r"/crm/v3/objects/(?P<type>contacts)/gdpr-delete", self.gdpr_delete)
        #: GDPR deletes received, in order ({"objectId", "idProperty"}): what tests assert on.
        self.gdpr_deletes: list[dict[str, Any]] = []
        self.route("GET", r"/crm/v3/objects/(?P<type>\w+)/(?P<id>[^/]+)", self.get_object)
        self.route("GET", r"/crm/v3/pipelines/tickets/(?P<id>[^/]+)", self.pipeline)
        self.route(
            "GET", r"/crm/v4/objects/(?P<type>\w+)/(?P<id>\d+)/associations/(?P<to>\w+)", self.associated
        )

    def _seed(self) -> None:
        for stream, object_type in OBJECTS.items():
            self.tables[stream] = self.by_type[object_type] = Table(object_type, unique=UNIQUE[object_type])
        for object_type in ENGAGEMENTS:
            self.tables[object_type] = self.by_type[object_type] = Table(object_type)
        seed, n = self.seed, self.counts
        for i in range(n["accounts"]):
            c = seed.company(i)
            self._add(
                "companies",
                i,
                {
                    "name": c["name"],
                    "domain": c["website"].removeprefix("https://"),
                    "country": c["country"],
                    "industry": c["industry"],
                },
            )
        for i in range(n["contacts"]):
            p = seed.person(i)
            self._add(
                "contacts",
                i,
                {
                    "email": p["email"],
                    "firstname": p["first_name"],
                    "lastname": p["last_name"],
                    "phone": p["phone"],
                    "country": p["country"],
                    "hs_language": p["locale"],
                    "company": seed.company(p["company_index"])["name"],
                },
            )
        for i in range(n["tickets"]):
            t = seed.ticket(i)
            self._add(
                "tickets",
                i,
                {
                    "subject": t["subject"],
                    "content": t["description"],
                    "hs_pipeline_stage": t["status"].lower(),
                    "hs_ticket_priority": t["priority"],
                },
            )
        for i in range(n["orders"]):
            o = seed.order(i)
            self._add(
                "orders",
                i,
                {
                    "hs_order_name": f"Order {o['number']}",
                    "hs_pipeline_stage": o["status"].lower(),
                    "hs_total_price": str(o["amount"]),
                    "hs_currency_code": o["currency"],
                },
            )

    def _add(self, object_type: str, i: int, props: dict[str, Any], ts: int | None = None) -> Row:
        row = Row(str(10_000_000 + i), seed_ts(i) if ts is None else ts, props)
        props["createdate"] = iso_ms(row.ts)
        return self.by_type[object_type].insert(row)

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

    def _error(self, status: int, message: str, category: str, **extra: Any) -> SimResponse:
        body = {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        }
        return json_response(status, {**body, **extra})

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

    def error(self, status: int, message: str) -> SimResponse:
        return self._error(status, message, "OBJECT_NOT_FOUND" if status == 404 else "INTERNAL_ERROR")

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

    # --- reads ------------------------------------------------------------------------------------

    def _table(self, request: SimRequest) -> tuple[str, Table] | None:
        assert request.match is not None
        object_type = request.match.group("type")
        table = self.by_type.get(object_type)
        return (object_type, table) if table is not None else None

    def _object(self, object_type: str, row: Row, props: tuple[str, ...] | None) -> dict[str, Any]:
        values = dict(row.data)
        values[modified_property(object_type)] = iso_ms(row.ts)
        values["hs_object_id"] = row.id
        wanted = props if props else ("createdate", "hs_object_id", modified_property(object_type))
        return {
            "id": row.id,
            "properties": {p: values.get(p) for p in wanted},
            "createdAt": row.data["createdate"],
            "updatedAt": iso_ms(row.ts),
            "archived": row.deleted,
        }

    def _json(self, object_type: str, row: Row, props: tuple[str, ...] | None) -> bytes:
        cached = row.cache.get(props)
        if cached is None:
            cached = row.cache[props] = json.dumps(
                self._object(object_type, row, props), ensure_ascii=False
            ).encode()
        return cached

    def properties(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type from: x", "VALIDATION_ERROR")
        names = (*PROPERTIES[found[0]], "createdate", "hs_object_id", modified_property(found[0]))
        unique = UNIQUE[found[0]]
        results = [{"name": n, "type": "string", "hasUniqueValue": n in unique} for n in names]
        return json_response(200, {"results": results})

    def list_page(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        limit = int(request.query.get("limit", 10))
        if limit > 100:
            return self._error(400, "limit must be <= 100", "VALIDATION_ERROR")
        after = request.query.get("after", "")
        props = tuple(p for p in request.query.get("properties", "").split(",") if p) or None
        archived = request.query.get("archived", "false") == "true"
        with table.lock:
            ids = sorted(k for k, r in table.rows.items() if r.deleted == archived and k > after)
        page = ids[:limit]
        body = b'{"results":[' + b",".join(self._json(object_type, table.rows[i], props) for i in page) + b"]"
        if len(ids) > limit:
            link = f"{self.base_url}{request.path}?limit={limit}&after={page[-1]}"
            body += b',"paging":' + json.dumps({"next": {"after": page[-1], "link": link}}).encode()
        return SimResponse(200, body + b"}")

    def search(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        query = request.json() or {}
        limit, after = int(query.get("limit", 10)), int(query.get("after") or 0)
        if limit > 200:
            return self._error(400, "limit must be <= 200", "VALIDATION_ERROR")
        if after + limit > self.search_cap:
            return self._error(
                400,
                f"The search result set is limited to {self.search_cap} results; "
                "narrow the query with filters",
                "VALIDATION_ERROR",
            )
        mod = modified_property(object_type)
        groups = query.get("filterGroups") or []
        start = None
        filters = [f for g in groups for f in g.get("filters", [])]
        lows = [f for f in filters if f["propertyName"] == mod and f["operator"] in ("GTE", "GT")]
        if lows and len(groups) == 1:
            start = _ms(lows[0]["value"]) // 1000
        rows = [r for r in table.since(start) if not r.deleted]
        if groups:
            rows = [
                r
                for r in rows
                if any(all(self._match(object_type, r, f) for f in g.get("filters", [])) for g in groups)
            ]
        sorts = query.get("sorts") or []
        if sorts and (sorts[0].get("propertyName"), sorts[0].get("direction", "ASCENDING")) != (
            mod,
            "ASCENDING",
        ):
            name, desc = sorts[0]["propertyName"], sorts[0].get("direction") == "DESCENDING"
            rows.sort(
                key=lambda r: str(self._object(object_type, r, (name,))["properties"][name] or ""),
                reverse=desc,
            )
        props = tuple(query.get("properties") or ()) or None
        page = rows[after : after + limit]
        body = f'{{"total":{len(rows)},"results":['.encode()
        body += b",".join(self._json(object_type, r, props) for r in page) + b"]"
        if after + limit < len(rows):
            body += f',"paging":{{"next":{{"after":"{after + limit}"}}}}'.encode()
        return SimResponse(200, body + b"}")

    def _match(self, object_type: str, row: Row, flt: dict[str, Any]) -> bool:
        name, op, value = flt["propertyName"], flt["operator"], flt.get("value")
        if name == modified_property(object_type):
            left: Any = row.ts * 1000
            right: Any = _ms(value) if value is not None else None
        else:
            left, right = row.data.get(name), value
        if op == "HAS_PROPERTY":
            return left not in (None, "")
        if op == "EQ":
            return str(left) == str(right)
        if op == "NEQ":
            return str(left) != str(right)
        if op == "IN":
            return str(left) in [str(v) for v in flt.get("values", [])]
        if left is None or right is None:
            return False
        return {"GT": left > right, "GTE": left >= right, "LT": left < right, "LTE": left <= right}.get(
            op, False
        )

    # --- writes -----------------------------------------------------------------------------------

    def _invalid(self, object_type: str, props: dict[str, Any]) -> str | None:
        unknown = [p for p in props if p not in PROPERTIES[object_type]]
        if unknown:
            return f'Property "{unknown[0]}" does not exist'
        email = props.get("email")
        if email and "@" not in str(email):
            return f'Property values were not valid: invalid email address "{email}"'
        return None

    def create(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        props = {k: str(v) for k, v in ((request.json() or {}).get("properties") or {}).items()}
        problem = self._invalid(object_type, props) or self._incomplete(object_type, props)
        if problem:
            return self._error(400, problem, "VALIDATION_ERROR")
        for name in UNIQUE[object_type]:
            existing = table.find(name, props.get(name)) if props.get(name) else None
            if existing is not None:
                label = object_type.rstrip("s").capitalize()
                return self._error(409, f"{label} already exists. Existing ID: {existing.id}", "CONFLICT")
        targets = []
        for assoc in (request.json() or {}).get("associations") or []:
            to_id = str((assoc.get("to") or {}).get("id"))
            types = [t.get("associationTypeId") for t in assoc.get("types") or []]
            to_type = next(
                (b for (a, b), n in ASSOCIATION_TYPES.items() if a == object_type and n in types), None
            )
            if to_type is None or to_id not in self.by_type[to_type].rows:
                return self._error(
                    400, f"association to {to_id} with types {types} is not valid", "VALIDATION_ERROR"
                )
            targets.append((to_type, to_id))
        row = self._insert(object_type, props)
        for to_type, to_id in targets:
            self.associate(object_type, row.id, to_type, to_id)
        return json_response(201, self._object(object_type, row, tuple(props)))

    # --- engagements, associations, pipelines, the agent helper and webhooks ----------------

    def _incomplete(self, object_type: str, props: dict[str, Any]) -> str | None:
        """Why a new object cannot be created (required properties, a ticket's pipeline and stage)."""
        missing = [p for p in REQUIRED_ON_CREATE.get(object_type, ()) if not props.get(p)]
        if missing:
            label = object_type.rstrip("s").upper()
            return (
                f"Cannot create object with type: {label}. "
                f"The following required properties were missing: {missing}"
            )
        if object_type == "tickets":
            pipeline = props["hs_pipeline"] = props.get("hs_pipeline") or DEFAULT_PIPELINE[0]
            stages = [s for s, _label, _state in self.pipelines.get(pipeline, [])]
            if not stages:
                return f"{pipeline} is not a valid pipeline ID"
            stage = props["hs_pipeline_stage"]
            if stage not in stages:
                return f"{stage} is not a valid pipeline stage ID for pipeline {pipeline}"
        return None

    def pipeline(self, request: SimRequest) -> SimResponse:
        """GET /crm/v3/pipelines/tickets/{id}: the pipeline and its stages in display order."""
        assert request.match is not None
        pipeline_id = request.match.group("id")
        stages = self.pipelines.get(pipeline_id)
        if stages is None:
            return self._error(404, f"Unable to find pipeline {pipeline_id}", "OBJECT_NOT_FOUND")
        now = iso_ms(int(time.time()))
        return json_response(200, {
            "id": pipeline_id, "label": "Support pipeline" if pipeline_id == "0" else pipeline_id,
            "displayOrder": 0, "archived": False, "createdAt": now, "updatedAt": now,
            "stages": [
                {"id": stage, "label": label, "displayOrder": n, "archived": False, "createdAt": now,
                 "updatedAt": now, "metadata": {"ticketState": state}}
                for n, (stage, label, state) in enumerate(stages)
            ],
        })  # fmt: skip

    def _insert(self, object_type: str, props: dict[str, Any], *, ts: int | None = None) -> Row:
        with self._id_lock:
            self._next_id += 1
            n = self._next_id - 10_000_000
        return self._add(object_type, n, props, ts=int(time.time()) if ts is None else ts)

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Associate two objects with HubSpot's default type ids, both directions."""
        with self._id_lock:
            self.associations.setdefault((from_type, from_id), []).append(
                (to_type, to_id, ASSOCIATION_TYPES[(from_type, to_type)])
            )
            self.associations.setdefault((to_type, to_id), []).append(
                (from_type, from_id, ASSOCIATION_TYPES[(to_type, from_type)])
            )

    def engagement_add(
        self, ticket_id: str, object_type: str, props: dict[str, Any], *, ts: int | None = None
    ) -> Row:
        """Log a note or an e-mail on a ticket (stamped now, or at `ts`); the ticket's activity moves."""
        stamp = int(time.time()) if ts is None else ts
        row = self._insert(object_type, {"hs_timestamp": iso_ms(stamp), **props}, ts=stamp)
        self.associate(object_type, row.id, "tickets", ticket_id)
        self.by_type["tickets"].update(ticket_id, {})
        return row

    def engagements(self, ticket_id: str, object_type: str) -> list[Row]:
        """The ticket's notes or e-mails, oldest first."""
        ids = {i for t, i, _n in self.associations.get(("tickets", ticket_id), []) if t == object_type}
        return sorted((self.by_type[object_type].rows[i] for i in ids), key=lambda r: (r.ts, r.id))

    def ticket(self, ticket: str) -> Row:
        """Find a ticket by id or by the hub's external id; KeyError when there is none."""
        return self.ticket_row(self.by_type["tickets"], ticket, external="hub_external_id")

    def webhook_secret(self) -> str:
        """HubSpot signs with the app's client secret unless the test registered another one."""
        return super().webhook_secret() or self.client_secret

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        self.agent_check(body, state)
        row = self.ticket(ticket)
        first, _, last = (author or "Sam Agent").partition(" ")
        entry = None
        if body.strip() and public:  # an e-mail to the customer, sent from the ticket
            headers = json.dumps(
                {"from": {"email": "support@hub-demo.sim", "firstName": first, "lastName": last}}
            )
            entry = self.engagement_add(
                row.id,
                "emails",
                {
                    "hs_email_direction": "EMAIL",
                    "hs_email_status": "SENT",
                    "hs_email_subject": "Re: your request",
                    "hs_email_text": body,
                    "hs_email_html": f"<div>{escape(body)}</div>",
                    "hs_email_headers": headers,
                },
            )
        elif body.strip():  # an internal note (HTML, as the editor writes it)
            entry = self.engagement_add(row.id, "notes", {"hs_note_body": f"<p>{escape(body)}</p>"})
        events = []
        if entry is not None:
            events.append(("notes_last_updated", str(entry.ts * 1000)))
        if state:
            stage = AGENT_STAGES.get(state, state)
            self.by_type["tickets"].update(row.id, {"hs_pipeline_stage": stage})
            events.append(("hs_pipeline_stage", stage))
        return {
            "ticket": row.id,
            "number": row.id,
            "comment_id": entry.id if entry else None,
            "state": row.data.get("hs_pipeline_stage"),
            "webhook": self.announce(row.id, events),
        }

    def announce(self, ticket_id: str, changes: list[tuple[str, str]]) -> dict[str, Any]:
        """Webhook v3: a JSON list of ticket.propertyChange events (one per changed property), signed
        X-HubSpot-Signature-v3 = base64(HMAC-SHA256(client secret, method + URI + body + timestamp ms))."""
        now = int(time.time() * 1000)
        events = [
            {
                "eventId": uuid.uuid4().int % 10**10,
                "subscriptionId": 2400001,
                "portalId": PORTAL_ID,
                "appId": APP_ID,
                "occurredAt": now,
                "subscriptionType": "ticket.propertyChange",
                "attemptNumber": 0,
                "objectId": int(ticket_id),
                "propertyName": name,
                "propertyValue": value,
                "changeSource": "CRM_UI",
            }
            for name, value in changes
        ]
        body = json.dumps(events).encode()
        stamp = str(now)
        url = self.webhook.url if self.webhook else ""
        message = b"POST" + url.encode() + body + stamp.encode()
        digest = hmac.new(self.webhook_secret().encode(), message, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
            "X-HubSpot-Request-Timestamp": stamp,
            "X-HubSpot-Signature-Version": "v3",
        }
        return self.send_webhook(",".join(str(e["eventId"]) for e in events), body, headers)

    def get_object(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        assert request.match is not None
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        value, id_property = request.match.group("id"), request.query.get("idProperty")
        if id_property:
            if id_property not in UNIQUE[object_type]:
                return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
            row = table.find(id_property, value)
        else:
            row = table.rows.get(value)
        if row is None or row.deleted:
            return self._error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        props = tuple(p for p in request.query.get("properties", "").split(",") if p) or None
        return SimResponse(200, self._json(object_type, row, props))

    def batch_read(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        query = request.json() or {}
        inputs = query.get("inputs") or []
        if len(inputs) > 100:
            return self._error(400, "Batch input is limited to 100 inputs", "VALIDATION_ERROR")
        props = tuple(query.get("properties") or ()) or None
        id_property = query.get("idProperty")
        if id_property and id_property not in UNIQUE[object_type]:
            return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
        if id_property:
            rows = [table.find(id_property, str(i.get("id"))) for i in inputs]
        else:
            rows = [table.rows.get(str(i.get("id"))) for i in inputs]
        results = [self._object(object_type, r, props) for r in rows if r is not None and not r.deleted]
        started = iso_ms(int(time.time()))
        body = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": started}
        missing = [str(i.get("id")) for i, r in zip(inputs, rows, strict=True) if r is None or r.deleted]
        if missing:
            error = {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some objects",
                "context": {"ids": missing},
            }
            return json_response(207, {**body, "numErrors": 1, "errors": [error]})
        return json_response(200, body)

    def associated(self, request: SimRequest) -> SimResponse:
        """Associations v4: GET /crm/v4/objects/{type}/{id}/associations/{toType}, paged by `after`."""
        assert request.match is not None
        object_type, object_id = request.match.group("type"), request.match.group("id")
        to_type = request.match.group("to")
        if object_type not in self.by_type or to_type not in self.by_type:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        limit = int(request.query.get("limit", 500))
        if limit > 500:
            return self._error(400, "limit must be <= 500", "VALIDATION_ERROR")
        offset = int(request.query.get("after") or 0)
        linked = [(i, n) for t, i, n in self.associations.get((object_type, object_id), []) if t == to_type]
        page = linked[offset : offset + limit]
        results = [
            {
                "toObjectId": int(i),
                "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": n, "label": None}],
            }
            for i, n in page
        ]
        body: dict[str, Any] = {"results": results}
        if offset + limit < len(linked):
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return json_response(200, body)

    def batch_upsert(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        inputs = (request.json() or {}).get("inputs") or []
        started = iso_ms(int(time.time()))
        if len(inputs) > 100:
            return self._error(400, "Batch input is limited to 100 inputs", "VALIDATION_ERROR")
        id_props = {i.get("idProperty") for i in inputs}
        if len(id_props) > 1 or not id_props <= set(UNIQUE[object_type]):
            return self._error(
                400, f"idProperty must be a unique property of {object_type}", "VALIDATION_ERROR"
            )
        ids = [str(i.get("id")) for i in inputs]
        if len(set(ids)) != len(ids):
            return self._error(400, "Duplicate IDs found in batch input", "VALIDATION_ERROR")
        results, errors = [], []
        with table.lock:
            for item in inputs:
                id_prop, ext = item["idProperty"], str(item["id"])
                props = {
                    k: (None if v is None else str(v)) for k, v in (item.get("properties") or {}).items()
                }
                problem = self._invalid(object_type, props)
                if problem:
                    errors.append(
                        {
                            "status": "error",
                            "category": "VALIDATION_ERROR",
                            "message": problem,
                            "context": {"ids": [ext]},
                            "errors": [],
                            "links": {},
                        }
                    )
                    continue
                props[id_prop] = ext
                row = table.find(id_prop, ext)
                missing = self._incomplete(object_type, props) if row is None else None
                if missing:
                    errors.append({"status": "error", "category": "VALIDATION_ERROR", "message": missing,
                                   "context": {"ids": [ext]}, "errors": [], "links": {}})  # fmt: skip
                    continue
                if row is None:
                    self._next_id += 1
                    row = self._add(object_type, self._next_id - 10_000_000, props, ts=int(time.time()))
                    new = True
                else:
                    row = table.update(row.id, props)
                    new = False
                results.append({**self._object(object_type, row, tuple(props)), "new": new})
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso_ms(int(time.time())),
        }
        if errors:
            return json_response(207, {**body, "numErrors": len(errors), "errors": errors})
        return json_response(200, body)

    def gdpr_delete(self, request: SimRequest) -> SimResponse:
        """Permanently delete a contact (HubSpot's GDPR delete): by id, or by e-mail with idProperty=email.

        204 on success; 404 when no such contact exists; the row is gone from lists, search and reads.
        """
        body = request.json() or {}
        object_id, id_property = str(body.get("objectId") or ""), body.get("idProperty")
        if not object_id:
            return self._error(400, "objectId is required", "VALIDATION_ERROR")
        table = self.by_type["contacts"]
        if id_property not in (None, "", "email", "hs_object_id"):
            return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
        with table.lock:
            if id_property == "email":
                row = next(
                    (
                        r
                        for r in table.rows.values()
                        if str(r.data.get("email") or "").lower() == object_id.lower()
                    ),
                    None,
                )
            else:
                row = table.rows.get(object_id)
            if row is None:
                return self._error(
                    404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND"
                )
            self.gdpr_deletes.append({"objectId": object_id, "idProperty": id_property})
            table.rows.pop(row.id)
            table._keys.remove((row.ts, row.id))
        return SimResponse(204, b"")
