"""HubSpot CRM v3 simulator: bearer tokens (private app and OAuth refresh), list paging with `after`,
search with the 10,000-result cap, batch upsert with idProperty and 207 partial failures, 429 policies;
engagements on tickets (notes and e-mails, associations v4, batch read, reads by idProperty) and an
agent helper that announces its activity as signed webhook v3 events (ticket.propertyChange). Also CRUD
by id, batch create/update/archive, associations v4 between contacts, companies and tickets, and the
properties API (docs/vendors.md lists them with their tests)."""

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
from urllib.parse import unquote
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
#: More HubSpot-defined association types, (from, to) -> [(typeId, label)]: the unlabeled default first.
LINK_TYPES: dict[tuple[str, str], list[tuple[int, str | None]]] = {
    ("contacts", "companies"): [(279, None), (1, "Primary")],
    ("companies", "contacts"): [(280, None), (2, "Primary")],
    ("contacts", "tickets"): [(15, None)],
    ("tickets", "contacts"): [(16, None)],
    ("companies", "tickets"): [(340, None), (25, "Primary")],
    ("tickets", "companies"): [(339, None), (26, "Primary")],
}
ASSOCIATION_TYPES.update({pair: types[0][0] for pair, types in LINK_TYPES.items()})
#: Object type ids (v4 answers name them) and the names the v4 API accepts for an object type.
OBJECT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "tickets": "0-5", "notes": "0-46", "emails": "0-49",
                   "orders": "0-123", "leads": "0-136"}  # fmt: skip
TYPE_ALIASES = {
    **{name: name for name in OBJECT_TYPE_IDS},
    **{name.rstrip("s"): name for name in OBJECT_TYPE_IDS},
    **{type_id: name for name, type_id in OBJECT_TYPE_IDS.items()},
    "company": "companies",
}
#: Search limits HubSpot documents: filter groups, filters per group, filters in all.
SEARCH_LIMITS = (5, 6, 18)
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
        self._seed_links()
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
        return json_response(200, {"results": [self._property(found[0], n, n in unique) for n in names]})

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
        archived = request.query.get("archived", "false").lower() == "true"  # the client sends "True"
        with table.lock:
            ids = sorted(k for k, r in table.rows.items() if r.deleted == archived and k > after)
        page = ids[:limit]
        linked = self._wanted_links(request)
        body = b'{"results":[' + b",".join(
            self._json_linked(object_type, table.rows[i], props, linked) for i in page
        )
        body += b"]"
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
        too_many = self._search_too_big(groups)
        if too_many:
            return self._error(400, too_many, "VALIDATION_ERROR")
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
        if query.get("query"):
            rows = [r for r in rows if self._text_match(object_type, r, str(query["query"]))]
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
        if op == "NOT_HAS_PROPERTY":
            return left in (None, "")
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(value or "").lower().strip("*")
            found = token in str(left or "").lower()
            return found if op == "CONTAINS_TOKEN" else not found
        if op == "NOT_IN":
            return str(left) not in [str(v) for v in flt.get("values", [])]
        if op == "BETWEEN":
            high = flt.get("highValue")
            if name == modified_property(object_type):
                high = _ms(high) if high is not None else None
            return left is not None and right is not None and high is not None and right <= left <= high
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
        conflict = self._conflict(object_type, table, props, None)  # an archived object frees its values
        if conflict:
            return self._error(409, conflict, "CONFLICT")
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
        value, id_property = unquote(request.match.group("id")), request.query.get("idProperty")
        if id_property:
            if id_property not in UNIQUE[object_type]:
                return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
            row = table.find(id_property, value)
        else:
            row = table.rows.get(value)
        archived = request.query.get("archived", "false").lower() == "true"
        if row is None or row.deleted != archived:
            return self._error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        props = tuple(p for p in request.query.get("properties", "").split(",") if p) or None
        return SimResponse(200, self._json_linked(object_type, row, props, self._wanted_links(request)))

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
        object_type = TYPE_ALIASES.get(request.match.group("type"), "")
        object_id, to_type = request.match.group("id"), TYPE_ALIASES.get(request.match.group("to"), "")
        if object_type not in self.by_type or to_type not in self.by_type:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        limit = int(request.query.get("limit", 500))
        if limit > 500:
            return self._error(400, "limit must be <= 500", "VALIDATION_ERROR")
        offset = int(request.query.get("after") or 0)
        linked = self._linked(object_type, object_id, to_type)
        page = linked[offset : offset + limit]
        results = [{"toObjectId": int(i), "associationTypes": [_spec(n) for n in types]} for i, types in page]
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
                row = None if row is not None and row.deleted else row  # archived: upsert creates anew
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

    # --- fidelity: CRUD by id, batch create/update/archive, properties, associations v4, search ----

    @staticmethod
    def _property(object_type: str, name: str, unique: bool) -> dict[str, Any]:
        """One property as /crm/v3/properties answers it (the official client needs every field)."""
        kind = (
            "datetime"
            if name in ("createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_timestamp")
            else "string"
        )
        return {
            "name": name, "label": name.replace("_", " ").capitalize(), "type": kind,
            "fieldType": "date" if kind == "datetime" else "text", "description": "",
            "groupName": f"{object_type.rstrip('s')}information", "options": [], "displayOrder": -1,
            "calculated": False, "externalOptions": False, "hasUniqueValue": unique, "hidden": False,
            "formField": kind == "string", "archived": False,
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": True, "readOnlyValue": False},
        }  # fmt: skip

    def property_one(self, request: SimRequest) -> SimResponse:
        """GET /crm/v3/properties/{type}/{name}."""
        found = self._table(request)
        assert request.match is not None
        name = request.match.group("name")
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        names = (*PROPERTIES[found[0]], "createdate", "hs_object_id", modified_property(found[0]))
        if name not in names:
            return self._error(404, f"Property {name} does not exist", "OBJECT_NOT_FOUND")
        return json_response(200, self._property(found[0], name, name in UNIQUE[found[0]]))

    def _body(self, request: SimRequest) -> dict[str, Any] | None:
        try:
            body = request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _conflict(
        self, object_type: str, table: Table, props: dict[str, Any], row_id: str | None
    ) -> str | None:
        for name in UNIQUE[object_type]:
            existing = table.find(name, props.get(name)) if props.get(name) else None
            if existing is not None and existing.id != row_id and not existing.deleted:
                label = object_type.rstrip("s").capitalize()
                return f"{label} already exists. Existing ID: {existing.id}"
        return None

    def update_object(self, request: SimRequest) -> SimResponse:
        """PATCH /crm/v3/objects/{type}/{id} (or by `idProperty`): the updated object."""
        found, body = self._table(request), self._body(request)
        assert request.match is not None
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        if body is None or not isinstance(body.get("properties"), dict):
            return self._error(400, 'Invalid input JSON: expected {"properties": {...}}', "VALIDATION_ERROR")
        id_property = request.query.get("idProperty")
        if id_property and id_property not in UNIQUE[object_type]:
            return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
        value = unquote(request.match.group("id"))  # an e-mail address as the id arrives percent-encoded
        row = table.find(id_property, value) if id_property else table.rows.get(value)
        if row is None or row.deleted:
            return self._error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        props = {k: None if v is None else str(v) for k, v in body["properties"].items()}
        problem = self._invalid(object_type, props)
        if problem:
            return self._error(400, problem, "VALIDATION_ERROR")
        conflict = self._conflict(object_type, table, props, row.id)
        if conflict:
            return self._error(409, conflict, "CONFLICT")
        row = table.update(row.id, props)
        return json_response(200, self._object(object_type, row, tuple(props) or None))

    def archive_object(self, request: SimRequest) -> SimResponse:
        """DELETE /crm/v3/objects/{type}/{id}: archive (204, also for an id already archived or unknown)."""
        found = self._table(request)
        assert request.match is not None
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        self._archive(found[1], request.match.group("id"))
        return SimResponse(204, b"", "text/plain")

    @staticmethod
    def _archive(table: Table, row_id: str) -> None:
        with table.lock:
            row = table.rows.get(row_id)
            if row is not None and not row.deleted:
                row.deleted = True
                table.update(row.id, {})

    def _inputs(self, request: SimRequest) -> tuple[list[dict[str, Any]], SimResponse | None]:
        body = self._body(request)
        inputs = body.get("inputs") if body is not None else None
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            return [], self._error(400, 'Invalid input JSON: expected {"inputs": [...]}', "VALIDATION_ERROR")
        if len(inputs) > 100:
            return [], self._error(400, "Batch input is limited to 100 inputs", "VALIDATION_ERROR")
        return inputs, None

    def _batch_answer(
        self, status: int, results: list[dict[str, Any]], errors: list[dict[str, Any]], started: str
    ) -> SimResponse:
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                "completedAt": iso_ms(int(time.time()))}  # fmt: skip
        if errors:
            return json_response(207, {**body, "numErrors": len(errors), "errors": errors})
        return json_response(status, body)

    def batch_create(self, request: SimRequest) -> SimResponse:
        """POST batch/create: all or nothing (one invalid input fails the batch with 400, a duplicate 409)."""
        found = self._table(request)
        inputs, denied = self._inputs(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        if denied is not None:
            return denied
        object_type, table = found
        started = iso_ms(int(time.time()))
        batch = [
            {k: None if v is None else str(v) for k, v in (i.get("properties") or {}).items()} for i in inputs
        ]
        with table.lock:
            for props in batch:
                problem = self._invalid(object_type, props) or self._incomplete(object_type, props)
                if problem:
                    return self._error(400, problem, "VALIDATION_ERROR")
                conflict = self._conflict(object_type, table, props, None)
                if conflict:
                    return self._error(409, conflict, "CONFLICT")
            rows = [self._insert(object_type, props) for props in batch]
        results = [
            self._object(object_type, row, tuple(props) or None)
            for row, props in zip(rows, batch, strict=True)
        ]
        return self._batch_answer(201, results, [], started)

    def batch_update(self, request: SimRequest) -> SimResponse:
        """POST batch/update: inputs [{id, properties}] (or idProperty); unknown ids come back as a 207."""
        found = self._table(request)
        inputs, denied = self._inputs(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        if denied is not None:
            return denied
        object_type, table = found
        started = iso_ms(int(time.time()))
        ids = [str(i.get("id")) for i in inputs]
        if len(set(ids)) != len(ids):
            return self._error(400, "Duplicate IDs found in batch input", "VALIDATION_ERROR")
        results, missing = [], []
        with table.lock:
            for item in inputs:
                props = {k: None if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
                problem = self._invalid(object_type, props)
                if problem:
                    return self._error(400, problem, "VALIDATION_ERROR")
            for item in inputs:
                id_property = item.get("idProperty")
                if id_property and id_property not in UNIQUE[object_type]:
                    return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
                key = str(item.get("id"))
                row = table.find(id_property, key) if id_property else table.rows.get(key)
                if row is None or row.deleted:
                    missing.append(key)
                    continue
                props = {k: None if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
                results.append(self._object(object_type, table.update(row.id, props), tuple(props) or None))
        errors = []
        if missing:
            errors = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not find some objects",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            ]
        return self._batch_answer(200, results, errors, started)

    def batch_archive(self, request: SimRequest) -> SimResponse:
        """POST batch/archive: inputs [{id}] -> 204."""
        found = self._table(request)
        inputs, denied = self._inputs(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        if denied is not None:
            return denied
        for item in inputs:
            self._archive(found[1], str(item.get("id")))
        return SimResponse(204, b"", "text/plain")

    @staticmethod
    def _search_too_big(groups: Any) -> str | None:
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            return "filterGroups must be a list of {filters: [...]}"
        max_groups, max_per_group, max_total = SEARCH_LIMITS
        sizes = [len(g.get("filters") or []) for g in groups]
        if len(groups) > max_groups or any(n > max_per_group for n in sizes) or sum(sizes) > max_total:
            return (f"Too many filters: at most {max_groups} filterGroups with at most {max_per_group} "
                    f"filters each, {max_total} in all")  # fmt: skip
        return None

    @staticmethod
    def _text_match(object_type: str, row: Row, text: str) -> bool:
        """The search `query` string: a (case-insensitive) prefix of a word in a text property."""
        needle = text.lower().strip()
        values = [str(row.data.get(p) or "").lower() for p in PROPERTIES[object_type]]
        return any(word.startswith(needle) or needle in value for value in values for word in value.split())

    # associations v4

    def _wanted_links(self, request: SimRequest) -> list[str]:
        """The object types of a read's `associations=` parameter (comma-separated or repeated)."""
        names = [TYPE_ALIASES.get(n.strip(), "") for n in request.query.get("associations", "").split(",")]
        return [n for n in names if n in self.by_type]

    def _json_linked(
        self, object_type: str, row: Row, props: tuple[str, ...] | None, linked: list[str]
    ) -> bytes:
        """An object, with its associations (v3 shape: {"companies": {"results": [{id, type}]}}) if asked."""
        if not linked:
            return self._json(object_type, row, props)
        payload = self._object(object_type, row, props)
        found: dict[str, Any] = {}
        for to_type in linked:
            results = [
                {"id": to_id, "type": _type_name(object_type, to_type, type_id)}
                for to_id, type_ids in self._linked(object_type, row.id, to_type)
                for type_id in type_ids
            ]
            if results:
                found[to_type] = {"results": results}
        if found:  # HubSpot leaves the key out when there are none
            payload["associations"] = found
        return json.dumps(payload, ensure_ascii=False).encode()

    def _seed_links(self) -> None:
        """Each seeded contact works at one seeded company (primary and unlabeled, as HubSpot shows it)."""
        companies = self.counts["accounts"]
        if not companies:
            return
        for i in range(self.counts["contacts"]):
            company = str(10_000_000 + self.seed.person(i)["company_index"] % companies)
            self.link("contacts", str(10_000_000 + i), "companies", company, [279, 1])

    def link(self, from_type: str, from_id: str, to_type: str, to_id: str, type_ids: list[int]) -> None:
        """Associate two objects with these type ids (each with its inverse); ValueError for a type id
        HubSpot does not define for the pair."""
        forward = [t for t, _label in LINK_TYPES.get((from_type, to_type), [])] or [
            ASSOCIATION_TYPES[(from_type, to_type)]
        ]
        backward = [t for t, _label in LINK_TYPES.get((to_type, from_type), [])] or [
            ASSOCIATION_TYPES[(to_type, from_type)]
        ]
        with self._id_lock:
            for type_id in type_ids:
                if type_id not in forward:
                    raise ValueError(f"association type {type_id} is not valid from {from_type} to {to_type}")
                inverse = backward[forward.index(type_id)]
                there = self.associations.setdefault((from_type, from_id), [])
                if (to_type, to_id, type_id) not in there:
                    there.append((to_type, to_id, type_id))
                back = self.associations.setdefault((to_type, to_id), [])
                if (from_type, from_id, inverse) not in back:
                    back.append((from_type, from_id, inverse))

    def unlink(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Remove every association between two objects, both directions."""
        with self._id_lock:
            for (a, a_id), (b, b_id) in (
                ((from_type, from_id), (to_type, to_id)),
                ((to_type, to_id), (from_type, from_id)),
            ):
                links = self.associations.get((a, a_id), [])
                links[:] = [x for x in links if (x[0], x[1]) != (b, b_id)]

    def _linked(self, object_type: str, object_id: str, to_type: str) -> list[tuple[str, list[int]]]:
        """(to id, [type ids]) for the objects of `to_type` associated with one object, in link order."""
        grouped: dict[str, list[int]] = {}
        for t, i, n in self.associations.get((object_type, object_id), []):
            if t == to_type:
                grouped.setdefault(i, []).append(n)
        return list(grouped.items())

    def _pair(self, request: SimRequest) -> tuple[str, str, str, str] | SimResponse:
        """The (type, id, to type, to id) of a v4 call, or the error for an unknown type or object."""
        assert request.match is not None
        from_type = TYPE_ALIASES.get(request.match.group("type"), "")
        to_type = TYPE_ALIASES.get(request.match.group("to"), "")
        if from_type not in self.by_type or to_type not in self.by_type:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        from_id, to_id = request.match.group("id"), request.match.group("to_id")
        for object_type, object_id in ((from_type, from_id), (to_type, to_id)):
            row = self.by_type[object_type].rows.get(object_id)
            if row is None or row.deleted:
                return self._error(
                    404, f"No {object_type.rstrip('s')} with id {object_id} exists", "OBJECT_NOT_FOUND"
                )
        return from_type, from_id, to_type, to_id

    def _labels_pair(self, from_type: str, from_id: str, to_type: str, to_id: str) -> dict[str, Any]:
        types = dict(self._linked(from_type, from_id, to_type)).get(to_id, [])
        return {"fromObjectTypeId": OBJECT_TYPE_IDS[from_type], "fromObjectId": int(from_id),
                "toObjectTypeId": OBJECT_TYPE_IDS[to_type], "toObjectId": int(to_id),
                "labels": [label for t in types if (label := _label(t))]}  # fmt: skip

    def link_default(self, request: SimRequest) -> SimResponse:
        """PUT .../associations/default/{toType}/{toId}: the unlabeled default association."""
        pair = self._pair(request)
        if isinstance(pair, SimResponse):
            return pair
        from_type, from_id, to_type, to_id = pair
        if (from_type, to_type) not in ASSOCIATION_TYPES:
            return self._error(400, f"{from_type} cannot be associated with {to_type}", "VALIDATION_ERROR")
        type_id = ASSOCIATION_TYPES[(from_type, to_type)]
        self.link(from_type, from_id, to_type, to_id, [type_id])
        now = iso_ms(int(time.time()))
        result = {
            "from": {"id": from_id},
            "to": {"id": to_id},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
        }
        return json_response(
            200, {"status": "COMPLETE", "results": [result], "startedAt": now, "completedAt": now}
        )

    def _type_ids(self, specs: Any, from_type: str, to_type: str) -> list[int] | str:
        if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
            return "give a list of {associationCategory, associationTypeId}"
        allowed = [t for t, _l in LINK_TYPES.get((from_type, to_type), [])]
        if (from_type, to_type) in ASSOCIATION_TYPES and not allowed:
            allowed = [ASSOCIATION_TYPES[(from_type, to_type)]]
        ids = []
        for spec in specs:
            type_id = spec.get("associationTypeId")
            if spec.get("associationCategory") != "HUBSPOT_DEFINED" or type_id not in allowed:
                return f"association type {type_id} is not valid from {from_type} to {to_type}"
            ids.append(int(type_id))
        return ids

    def link_labelled(self, request: SimRequest) -> SimResponse:
        """PUT .../associations/{toType}/{toId} with [{associationCategory, associationTypeId}]."""
        pair = self._pair(request)
        if isinstance(pair, SimResponse):
            return pair
        from_type, from_id, to_type, to_id = pair
        try:
            specs = request.json()
        except ValueError:
            specs = None
        type_ids = self._type_ids(specs, from_type, to_type)
        if isinstance(type_ids, str):
            return self._error(400, type_ids, "VALIDATION_ERROR")
        self.link(from_type, from_id, to_type, to_id, type_ids)
        return json_response(201, self._labels_pair(from_type, from_id, to_type, to_id))

    def unlink_pair(self, request: SimRequest) -> SimResponse:
        """DELETE .../associations/{toType}/{toId}: remove every association between the two (204)."""
        pair = self._pair(request)
        if isinstance(pair, SimResponse):
            return pair
        self.unlink(*pair)
        return SimResponse(204, b"", "text/plain")

    def _batch_types(self, request: SimRequest) -> tuple[str, str] | SimResponse:
        assert request.match is not None
        from_type = TYPE_ALIASES.get(request.match.group("type"), "")
        to_type = TYPE_ALIASES.get(request.match.group("to"), "")
        if from_type not in self.by_type or to_type not in self.by_type:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        return from_type, to_type

    def associations_batch_read(self, request: SimRequest) -> SimResponse:
        """POST /crm/v4/associations/{from}/{to}/batch/read: inputs [{id}]; ids without any come back as
        207 errors (NO_ASSOCIATIONS_FOUND), as HubSpot answers."""
        types = self._batch_types(request)
        inputs, denied = self._inputs(request)
        if isinstance(types, SimResponse):
            return types
        if denied is not None:
            return denied
        if len(inputs) > 1000:
            return self._error(400, "Batch input is limited to 1000 inputs", "VALIDATION_ERROR")
        from_type, to_type = types
        started = iso_ms(int(time.time()))
        results, errors = [], []
        for item in inputs:
            from_id = str(item.get("id"))
            linked = self._linked(from_type, from_id, to_type)
            if not linked:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                        "message": f"No {to_type} is associated with {from_type} {from_id}.",
                        "context": {"fromObjectId": [from_id]},
                        "errors": [],
                        "links": {},
                    }
                )
                continue
            results.append(
                {
                    "from": {"id": from_id},
                    "to": [
                        {"toObjectId": int(i), "associationTypes": [_spec(n) for n in ns]} for i, ns in linked
                    ],
                }
            )
        return self._batch_answer(200, results, errors, started)

    def associations_batch_create(self, request: SimRequest) -> SimResponse:
        """POST /crm/v4/associations/{from}/{to}/batch/create: inputs [{from:{id}, to:{id}, types:[...]}]."""
        types = self._batch_types(request)
        inputs, denied = self._inputs(request)
        if isinstance(types, SimResponse):
            return types
        if denied is not None:
            return denied
        from_type, to_type = types
        started = iso_ms(int(time.time()))
        pairs = []
        for item in inputs:
            from_id = str((item.get("from") or {}).get("id"))
            to_id = str((item.get("to") or {}).get("id"))
            type_ids = self._type_ids(item.get("types"), from_type, to_type)
            if isinstance(type_ids, str):
                return self._error(400, type_ids, "VALIDATION_ERROR")
            for object_type, object_id in ((from_type, from_id), (to_type, to_id)):
                row = self.by_type[object_type].rows.get(object_id)
                if row is None or row.deleted:
                    return self._error(
                        400, f"No {object_type.rstrip('s')} with id {object_id} exists", "VALIDATION_ERROR"
                    )
            pairs.append((from_id, to_id, type_ids))
        for from_id, to_id, type_ids in pairs:
            self.link(from_type, from_id, to_type, to_id, type_ids)
        results = [self._labels_pair(from_type, f, to_type, t) for f, t, _ids in pairs]
        return self._batch_answer(201, results, [], started)

    def associations_batch_archive(self, request: SimRequest) -> SimResponse:
        """POST /crm/v4/associations/{from}/{to}/batch/archive: inputs [{from:{id}, to:[{id}]}] -> 204."""
        types = self._batch_types(request)
        inputs, denied = self._inputs(request)
        if isinstance(types, SimResponse):
            return types
        if denied is not None:
            return denied
        for item in inputs:
            targets = item.get("to")
            for target in targets if isinstance(targets, list) else []:
                if isinstance(target, dict):
                    self.unlink(
                        types[0], str((item.get("from") or {}).get("id")), types[1], str(target.get("id"))
                    )
        return SimResponse(204, b"", "text/plain")

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


def _label(type_id: int) -> str | None:
    return next((label for types in LINK_TYPES.values() for t, label in types if t == type_id), None)


def _spec(type_id: int) -> dict[str, Any]:
    return {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": _label(type_id)}


def _type_name(from_type: str, to_type: str, type_id: int) -> str:
    """v3's association type names: contact_to_company (primary), contact_to_company_unlabeled, ..."""
    singular = {"companies": "company"}
    base = f"{singular.get(from_type, from_type.rstrip('s'))}_to_{singular.get(to_type, to_type.rstrip('s'))}"
    types = LINK_TYPES.get((from_type, to_type), [])
    return base + "_unlabeled" if len(types) > 1 and type_id == types[0][0] else base
