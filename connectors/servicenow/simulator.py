"""ServiceNow Table API simulator: basic auth and /oauth_token.do, encoded queries (^, ^OR, ^NQ, ORDERBY),
offset paging with X-Total-Count and Link headers, create/update, 429 with Retry-After; incident journals
(`comments` / `work_notes` written through the incident, read from sys_journal_field) and an agent helper
that announces its activity like a business rule's outbound REST message (HMAC-signed JSON). Also
sysparm_display_value with reference links, dot-walking, DELETE and the Aggregate API (docs/vendors.md)."""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

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

TABLES = {  # canonical stream -> table
    "contacts": "customer_contact",
    "accounts": "customer_account",
    "tickets": "incident",
    "orders": "sc_request",
    "articles": "kb_knowledge",
}
STATES = {"New": "1", "Working": "2", "Escalated": "3", "Closed": "7"}
JOURNAL = "sys_journal_field"
JOURNAL_ELEMENTS = ("comments", "work_notes")  # journal fields of an incident: customer-visible, internal
#: What the agent helper's portable states become; incident.state values ("1".."8") pass as they are.
AGENT_STATES = {"open": "2", "resolved": "6", "closed": "7"}
INCIDENT_STATES = ("1", "2", "3", "6", "7", "8")
_TERM = re.compile(
    r"^([a-z0-9_.]+?)(>=|<=|!=|>|<|=|NOT LIKE|LIKE|STARTSWITH|ENDSWITH|NOT IN|IN|ISEMPTY|ISNOTEMPTY|ANYTHING"
    r"|EMPTYSTRING)(.*)$"
)
#: Reference fields, (table, field) -> the table referred to, and the field a referred row displays as.
REFERENCES = {
    ("incident", "caller_id"): "customer_contact",
    ("customer_contact", "account"): "customer_account",
    ("kb_knowledge", "translated_from"): "kb_knowledge",
}
DISPLAY_FIELD = {"customer_contact": "name", "customer_account": "name", "kb_knowledge": "number"}
#: Choice fields and their labels (what sysparm_display_value=true shows).
CHOICES = {
    ("incident", "state"): {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed",
                            "8": "Canceled"},
    ("incident", "priority"): {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low",
                               "5": "5 - Planning"},
}  # fmt: skip
JOURNAL_LABELS = {"comments": "Additional comments", "work_notes": "Work notes"}
DISPLAY_MODES = ("false", "true", "all")
Predicate = Callable[[Row], bool]


def sn_time(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def sys_id(table: str, i: int) -> str:
    return hashlib.md5(f"{table}:{i}".encode(), usedforsecurity=False).hexdigest()


class ServiceNowSimulator(TicketSimulator):
    vendor = "servicenow"
    username = "hub.integration"
    password = "Sn0w-demo-pass"  # noqa: S105 - demo instance credential
    client_id = "sn-sim-client"
    client_secret = "sn-sim-secret-0001"  # noqa: S105
    payload_keys = ("result",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens.ttl = 1800
        self.refresh_tokens: set[str] = set()
        self._seq = 0
        self._seed()
        self.route("POST", r"/oauth_token\.do", self.oauth)
        self.route("GET", r"/api/now/table/(?P<table>\w+)", self.list_rows)
        self.route("GET", r"/api/now/table/(?P<table>\w+)/(?P<id>\w{32})", self.get)
        self.route("POST", r"/api/now/table/(?P<table>\w+)", self.create)
        self.route("PATCH", r"/api/now/table/(?P<table>\w+)/(?P<id>\w{32})", self.update)
        self.route("PUT", r"/api/now/table/(?P<table>\w+)/(?P<id>\w{32})", self.update)
        self.route("DELETE", r"/api/now/table/(?P<table>\w+)/(?P<id>\w{32})", self.delete_row)
        self.route("GET", r"/api/now/stats/(?P<table>\w+)", self.stats)

    def _seed(self) -> None:
        self.by_table: dict[str, Table] = {}
        for stream, table in TABLES.items():
            self.tables[stream] = self.by_table[table] = Table(table, unique=("correlation_id",))
        self.by_table[JOURNAL] = Table(JOURNAL)
        self._journal_seq = 0
        seed, n = self.seed, self.counts
        for i in range(n["accounts"]):
            c = seed.company(i)
            self._add(
                "customer_account",
                i,
                {
                    "name": c["name"],
                    "website": c["website"],
                    "country": c["country"],
                    "industry": c["industry"],
                    "number": f"ACCT{i + 1:07d}",
                },
            )
        for i in range(n["contacts"]):
            p = seed.person(i)
            self._add(
                "customer_contact",
                i,
                {
                    "first_name": p["first_name"],
                    "last_name": p["last_name"],
                    "email": p["email"],
                    "phone": p["phone"],
                    "country": p["country"],
                    "preferred_language": p["locale"],
                    "account": sys_id("customer_account", p["company_index"] % max(1, n["accounts"])),
                },
            )
        for i in range(n["tickets"]):
            t = seed.ticket(i)
            self._add(
                "incident",
                i,
                {
                    "number": f"INC{i + 1:07d}",
                    "short_description": t["subject"],
                    "description": t["description"],
                    "state": STATES[t["status"]],
                    "priority": t["priority"],
                    "correlation_id": "",
                    "caller_id": sys_id("customer_contact", t["person_index"] % max(1, n["contacts"])),
                },
            )
        for i in range(n["orders"]):
            o = seed.order(i)
            self._add(
                "sc_request",
                i,
                {
                    "number": f"REQ{i + 1:07d}",
                    "request_state": o["status"].lower(),
                    "price": f"{o['amount']:.2f}",
                    "currency": o["currency"],
                },
            )
        for i in range(n["articles"]):
            a = seed.article(i)
            self._add(
                "kb_knowledge",
                i,
                {
                    "number": f"KB{i + 1:07d}",
                    "short_description": a["title"],
                    "text": a["body"],
                    "language": a["locale"],
                    "workflow_state": "published",
                    "kb_knowledge_base": "IT",
                    # Seed articles come in groups of one per locale: the first is the original.
                    "translated_from": sys_id("kb_knowledge", i - i % len(LOCALES))
                    if i % len(LOCALES)
                    else "",
                },
            )
        self._seq = max(n.values())  # fmt: skip

    def _add(self, table: str, i: int, data: dict[str, Any], ts: int | None = None) -> Row:
        row = Row(sys_id(table, i), seed_ts(i) if ts is None else ts, data)
        data["sys_created_on"] = sn_time(row.ts)
        return self.by_table[table].insert(row)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "instance_url": self.base_url,
            "username": self.username,
            "password": self.password,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    # --- auth and errors ----------------------------------------------------------------------------

    def is_public(self, request: SimRequest) -> bool:
        return request.path == "/oauth_token.do"

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user = password = ""
            if (user, password) == (self.username, self.password):
                return None
        elif scheme.lower() == "bearer" and self.tokens.state(value) == "valid":
            return None
        return self._failure(401, "User Not Authenticated", "Required to provide Auth information")

    def _failure(self, status: int, message: str, detail: str = "") -> SimResponse:
        return json_response(status, {"error": {"message": message, "detail": detail}, "status": "failure"})

    def error(self, status: int, message: str) -> SimResponse:
        return self._failure(status, message, "")

    def rate_limited(self, request: SimRequest) -> SimResponse:
        retry = self.faults.rate_limit_retry_after
        response = self._failure(
            429, "Rate limit exceeded", "Rate limit rule hub_integration_hourly exceeded"
        )
        response.headers.update({"Retry-After": str(retry), "X-RateLimit-Limit": "5000",
                                 "X-RateLimit-Reset": str(int(time.time()) + retry),
                                 "X-RateLimit-Rule": "hub_integration_hourly"})  # fmt: skip
        return response

    def oauth(self, request: SimRequest) -> SimResponse:
        form = request.form()
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return json_response(401, {"error_description": "access_denied", "error": "server_error"})
        grant = form.get("grant_type")
        if grant == "password":
            if (form.get("username"), form.get("password")) != (self.username, self.password):
                return json_response(401, {"error_description": "access_denied", "error": "server_error"})
        elif grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return json_response(401, {"error_description": "access_denied", "error": "server_error"})
        else:
            return json_response(400, {"error": "unsupported_grant_type"})
        refresh = self.tokens.issue("rt-", ttl=100 * 86400)
        self.refresh_tokens.add(refresh)
        access = self.tokens.issue()
        return json_response(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": int(self.tokens.ttl) - 1,
            },
        )

    # --- encoded queries --------------------------------------------------------------------------

    @staticmethod
    def _value(row: Row, field: str) -> str:
        if field == "sys_id":
            return row.id
        if field == "sys_updated_on":
            return sn_time(row.ts)
        value = row.data.get(field)
        return "" if value is None else str(value)

    def _walk(self, table: str, row: Row, field: str) -> str:
        """A dot-walked field (`caller_id.email`): the field of the row a reference field points at."""
        ref, _, rest = field.partition(".")
        target = REFERENCES.get((table, ref))
        referred = self.by_table[target].rows.get(self._value(row, ref)) if target else None
        if referred is None:
            return ""
        if "." in rest:
            return self._walk(target or "", referred, rest)
        if rest == "name" and target == "customer_contact":
            return f"{referred.data.get('first_name', '')} {referred.data.get('last_name', '')}".strip()
        return self._value(referred, rest)

    def _term(self, text: str, table: str = "") -> Predicate:
        m = _TERM.match(text)
        if not m:
            raise ValueError(text)
        field, op, value = m.groups()
        get: Callable[[Row, str], str] = self._value
        if "." in field:
            if (table, field.partition(".")[0]) not in REFERENCES:
                raise ValueError(f"{field} is not a reference field of {table}")
            get = functools.partial(self._walk, table)

        def check(row: Row) -> bool:
            left = get(row, field)
            if op == "=":
                return left == value
            if op == "!=":
                return left != value
            if op == ">=":
                return left >= value
            if op == ">":
                return left > value
            if op == "<=":
                return left <= value
            if op == "<":
                return left < value
            if op == "LIKE":
                return value.lower() in left.lower()
            if op == "STARTSWITH":
                return left.startswith(value)
            if op == "ENDSWITH":
                return left.endswith(value)
            if op == "IN":
                return left in value.split(",")
            if op == "NOT IN":
                return left not in value.split(",")
            if op == "NOT LIKE":
                return value.lower() not in left.lower()
            if op == "ANYTHING":
                return True
            if op in ("ISEMPTY", "EMPTYSTRING"):
                return left == ""
            return left != ""

        return check

    def _query(self, table: Table, query: str) -> list[Row]:
        """Evaluate an encoded query; rows come back in (sys_updated_on, sys_id) order unless ORDERBY says."""
        groups: list[list[list[Predicate]]] = []
        orders: list[tuple[str, bool]] = []
        lower_bounds: list[int | None] = []
        for group_text in query.split("^NQ") if query else []:
            group: list[list[Predicate]] = []
            lower: int | None = None
            for term in filter(None, group_text.split("^")):
                if term == "EQ":  # the end marker the condition builder appends
                    continue
                if term.startswith("ORDERBYDESC"):
                    orders.append((term[11:], True))
                elif term.startswith("ORDERBY"):
                    orders.append((term[7:], False))
                elif term.startswith("OR") and group:
                    group[-1].append(self._term(term[2:], table.name))
                else:
                    group.append([self._term(term, table.name)])
                    m = re.match(r"^sys_updated_on(>=|>|=)(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$", term)
                    if m:
                        lower = calendar.timegm(time.strptime(m.group(2), "%Y-%m-%d %H:%M:%S"))
            if group:
                groups.append(group)
                lower_bounds.append(lower)
        start = None
        if lower_bounds and all(b is not None for b in lower_bounds):
            start = min(b for b in lower_bounds if b is not None)
        rows = table.since(start)
        if groups:
            rows = [r for r in rows if any(all(any(p(r) for p in alts) for alts in g) for g in groups)]
        natural = [o for o in orders if o != ("sys_updated_on", False)] in ([], [("sys_id", False)])
        if orders and not (natural and orders[0] == ("sys_updated_on", False)):
            for field, desc in reversed(orders):
                rows.sort(key=functools.partial(self._value, field=field), reverse=desc)
        return rows

    def _render(self, row: Row, fields: list[str] | None) -> dict[str, str]:
        full = {**{k: "" if v is None else str(v) for k, v in row.data.items()}, "sys_id": row.id,
                "sys_updated_on": sn_time(row.ts)}  # fmt: skip
        return {f: full.get(f, "") for f in fields} if fields else full

    def list_rows(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        table = self.by_table.get(request.match.group("table"))
        if table is None:
            return self._failure(400, "Invalid table " + request.match.group("table"))
        try:
            rows = self._query(table, request.query.get("sysparm_query", ""))
        except ValueError as exc:
            return self._failure(400, "Invalid query", str(exc))
        rows = [r for r in rows if not r.deleted]
        try:
            limit = int(request.query.get("sysparm_limit", 10000))
            offset = int(request.query.get("sysparm_offset", 0))
        except ValueError:
            return self._failure(400, "Invalid sysparm_limit or sysparm_offset", "expected a number")
        view = self._view(request)
        if isinstance(view, SimResponse):
            return view
        limit, offset = max(1, limit), max(0, offset)
        page = rows[offset : offset + limit]
        body = b'{"result":[' + b",".join(self._row_json(table.name, r, view) for r in page) + b"]}"
        headers = {"X-Total-Count": str(len(rows))}
        if len(rows) > limit:
            base = f"{self.base_url}{request.path}?"

            def link(off: int, rel: str) -> str:
                return f'<{base}{urlencode({**request.query, "sysparm_offset": off})}>;rel="{rel}"'

            links = [link(0, "first")]
            if offset > 0:
                links.append(link(max(0, offset - limit), "prev"))
            if offset + limit < len(rows):
                links.append(link(offset + limit, "next"))
            links.append(link(((len(rows) - 1) // limit) * limit, "last"))
            headers["Link"] = ",".join(links)
        return SimResponse(200, body, headers=headers)

    def _row_json(self, table: str, row: Row, view: tuple[list[str] | None, str, bool]) -> bytes:
        fields, mode, links = view
        if mode != "false" or any("." in f for f in fields or ()):  # values of other rows: never cached
            return json.dumps(self._present(table, row, view), ensure_ascii=False).encode()
        key = (tuple(fields) if fields else None, links)
        cached = row.cache.get(key)
        if cached is None:
            cached = row.cache[key] = json.dumps(self._present(table, row, view), ensure_ascii=False).encode()
        return cached

    def get(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        table = self.by_table.get(request.match.group("table"))
        row = table.rows.get(request.match.group("id")) if table else None
        if row is None or row.deleted or table is None:
            return self._failure(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        return self._answer(200, request, table.name, row)

    def create(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        name = request.match.group("table")
        if name not in self.by_table:
            return self._failure(400, "Invalid table " + name)
        try:
            data = {k: str(v) for k, v in (request.json() or {}).items()}
        except (ValueError, AttributeError):
            return self._failure(400, "Exception while reading request", "Invalid payload")
        journal = self._journal_fields(name, data)
        self._seq += 1
        data.setdefault("number", f"INC{self._seq + 1:07d}" if name == "incident" else f"X{self._seq:07d}")
        row = self._add(name, self._seq + 10_000_000, data, ts=int(time.time()))
        for element, value in journal.items():
            self.journal_add(row.id, element, value, author=self.username)
        return self._answer(201, request, name, row)

    def update(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        table = self.by_table.get(request.match.group("table"))
        row_id = request.match.group("id")
        if table is None or row_id not in table.rows or table.rows[row_id].deleted:
            return self._failure(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        try:
            changes = {k: str(v) for k, v in (request.json() or {}).items()}
        except (ValueError, AttributeError):
            return self._failure(400, "Exception while reading request", "Invalid payload")
        journal = self._journal_fields(table.name, changes)
        row = table.update(row_id, changes)
        for element, value in journal.items():
            self.journal_add(row_id, element, value, author=self.username)
        return self._answer(200, request, table.name, row)

    # --- fidelity: display values, reference links, journal fields on the record, delete ---------

    def _view(self, request: SimRequest) -> tuple[list[str] | None, str, bool] | SimResponse:
        """(sysparm_fields, sysparm_display_value, reference links?) of a request, or its 400."""
        fields_param = request.query.get("sysparm_fields")
        mode = request.query.get("sysparm_display_value", "false").lower()
        if mode not in DISPLAY_MODES:
            return self._failure(400, "Invalid sysparm_display_value", "expected true, false or all")
        links = request.query.get("sysparm_exclude_reference_link", "false").lower() != "true"
        return (
            ([f.strip() for f in fields_param.split(",") if f.strip()] if fields_param else None),
            mode,
            links,
        )

    def _answer(self, status: int, request: SimRequest, table: str, row: Row) -> SimResponse:
        view = self._view(request)
        if isinstance(view, SimResponse):
            return view
        return json_response(status, {"result": self._present(table, row, view)})

    def _journal_text(self, row: Row, element: str) -> str:
        """A journal field as the record shows it with display values: entries newest first."""
        journal = self.by_table[JOURNAL]
        with journal.lock:  # insertion order: entries of the same second keep the order they were written in
            entries = [
                r
                for r in journal.rows.values()
                if r.data["element_id"] == row.id and r.data["element"] == element
            ]
        label = JOURNAL_LABELS[element]
        return "".join(
            f"{e.data['sys_created_on']} - {e.data['sys_created_by']} ({label})\n{e.data['value']}\n\n"
            for e in reversed(entries)
        )

    def _display(self, table: str, field: str, value: str) -> str:
        target = REFERENCES.get((table, field))
        if target is not None:
            referred = self.by_table[target].rows.get(value) if value else None
            if referred is None:
                return ""
            if DISPLAY_FIELD[target] == "name" and "name" not in referred.data:
                return f"{referred.data.get('first_name', '')} {referred.data.get('last_name', '')}".strip()
            return str(referred.data.get(DISPLAY_FIELD[target]) or "")
        return CHOICES.get((table, field), {}).get(value, value)

    def _present(self, table: str, row: Row, view: tuple[list[str] | None, str, bool]) -> dict[str, Any]:
        """A record as the Table API renders it: journal fields read as empty (their entries live in
        sys_journal_field) unless display values are asked for; reference fields as {link, value} unless
        sysparm_exclude_reference_link; display values (true) or both (all) with sysparm_display_value."""
        fields, mode, links = view
        plain: dict[str, Any] = self._render(row, None)
        if table == "incident":
            for element in JOURNAL_ELEMENTS:
                plain[element] = self._journal_text(row, element) if mode != "false" else ""
        if fields:
            plain = {f: self._walk(table, row, f) if "." in f else plain.get(f, "") for f in fields}
        out: dict[str, Any] = {}
        for field, value in plain.items():
            target = REFERENCES.get((table, field))
            link = f"{self.base_url}/api/now/table/{target}/{value}" if target and value and links else None
            display = value if field in JOURNAL_ELEMENTS else self._display(table, field, value)
            if mode == "false":
                out[field] = {"link": link, "value": value} if link else value
            elif mode == "true":
                out[field] = {"display_value": display, "link": link} if link else display
            else:
                both = {"display_value": display, "value": value}
                out[field] = {**both, "link": link} if link else both
        return out

    def stats(self, request: SimRequest) -> SimResponse:
        """Aggregate API: GET /api/now/stats/{table}?sysparm_count=true[&sysparm_query=][&sysparm_group_by=]
        -> {"result": {"stats": {"count": "n"}}}, or one entry per group (counts are strings)."""
        assert request.match is not None
        table = self.by_table.get(request.match.group("table"))
        if table is None:
            return self._failure(400, "Invalid table " + request.match.group("table"))
        try:
            rows = [r for r in self._query(table, request.query.get("sysparm_query", "")) if not r.deleted]
        except ValueError as exc:
            return self._failure(400, "Invalid query", str(exc))
        if request.query.get("sysparm_count", "false").lower() != "true":
            return json_response(200, {"result": {"stats": {}}})
        group_by = [f for f in request.query.get("sysparm_group_by", "").split(",") if f]
        if not group_by:
            return json_response(200, {"result": {"stats": {"count": str(len(rows))}}})
        groups: dict[tuple[str, ...], int] = {}
        for row in rows:
            key = tuple(self._value(row, f) for f in group_by)
            groups[key] = groups.get(key, 0) + 1
        result = [
            {"stats": {"count": str(n)},
             "groupby_fields": [{"field": f, "value": v} for f, v in zip(group_by, key, strict=True)]}
            for key, n in sorted(groups.items())
        ]  # fmt: skip
        return json_response(200, {"result": result})

    def delete_row(self, request: SimRequest) -> SimResponse:
        """DELETE /api/now/table/{table}/{sys_id}: 204 without a body; 404 for an unknown or deleted row."""
        assert request.match is not None
        table = self.by_table.get(request.match.group("table"))
        row = table.rows.get(request.match.group("id")) if table else None
        if table is None or row is None or row.deleted:
            return self._failure(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        with table.lock:
            row.deleted = True
            table.update(row.id, {})
        return SimResponse(204, b"", "text/plain")

    # --- journals, the agent helper and business-rule webhooks ----------------------------------

    @staticmethod
    def _journal_fields(table: str, data: dict[str, str]) -> dict[str, str]:
        """Take the journal fields out of an incident write: they append entries, they are not columns."""
        if table != "incident":
            return {}
        return {e: data.pop(e) for e in JOURNAL_ELEMENTS if e in data and data[e].strip()}

    def journal_add(
        self, incident_id: str, element: str, value: str, *, author: str, ts: int | None = None
    ) -> Row:
        """Append a journal entry (sys_journal_field row) to an incident, stamped now (or at `ts`)."""
        table = self.by_table[JOURNAL]
        with table.lock:  # request threads append concurrently; ids must stay unique
            self._journal_seq += 1
            seq = self._journal_seq
        ts = int(time.time()) if ts is None else ts
        row = Row(sys_id(JOURNAL, seq), ts, {
            "name": "incident", "element_id": incident_id, "element": element, "value": value,
            "sys_created_by": author, "sys_created_on": sn_time(ts),
        })  # fmt: skip
        return table.insert(row)

    def journal(self, incident_id: str) -> list[Row]:
        """The incident's journal entries, oldest first."""
        return [r for r in self.by_table[JOURNAL].since() if r.data["element_id"] == incident_id]

    def incident(self, ticket: str) -> Row:
        """Find an incident by sys_id, number (INC...) or correlation id; KeyError when there is none."""
        return self.ticket_row(self.by_table["incident"], ticket, external="correlation_id", number="number")

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        self.agent_check(body, state)
        value = AGENT_STATES.get(state, state) if state else None
        if value is not None and value not in INCIDENT_STATES:
            raise ValueError(f"unknown state {state!r}: open, resolved, closed or an incident.state value")
        row = self.incident(ticket)
        entry = None
        if body.strip():
            element = "comments" if public else "work_notes"
            entry = self.journal_add(row.id, element, body, author=author or "beth.anglin")
        self.by_table["incident"].update(row.id, {"state": value} if value else {})
        return {
            "ticket": row.id,
            "number": row.data.get("number"),
            "comment_id": entry.id if entry else None,
            "state": row.data.get("state"),
            "webhook": self.announce(row.id),
        }

    def announce(self, incident_id: str) -> dict[str, Any]:
        """What a business rule's outbound REST message sends: which incident changed, HMAC-signed over
        "<timestamp>.<body>" (X-Hub-Signature-256: sha256=<hex>, X-Hub-Request-Timestamp: epoch seconds)."""
        event_id = str(uuid.uuid4())
        body = json.dumps({"id": event_id, "table": "incident", "sys_id": incident_id}).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(self.webhook_secret().encode(), stamp.encode() + b"." + body, hashlib.sha256)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": f"sha256={digest.hexdigest()}",
            "X-Hub-Request-Timestamp": stamp,
        }
        return self.send_webhook(event_id, body, headers)
