"""The simulated org's data: one table per entity set with the seeded multilingual rows, row versions
(the change tracking clock), sequential ids, how a row renders (`$select`, formatted values), key lookups
by GUID or alternate key, and Dataverse's error JSON. `DynamicsStore` is the base of every other module's
class."""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any, ClassVar
from urllib.parse import unquote

from connectors.dynamics.simulator.limits import LIMIT_CODES, ServiceProtection
from connectors.dynamics.simulator.schema import (
    BAD_REQUEST,
    CASE_STATUS_BY_SEED,
    CURRENCY_IDS,
    CURRENCY_NAMES,
    DUPLICATE,
    ENTITY_SETS,
    FORMATTED,
    GUID,
    NOT_FOUND,
    ORDER_STATUS_BY_SEED,
    QUEUES,
    EntitySet,
    guid,
    odata_time,
)
from connectors.simulation import Row, SimRequest, SimResponse, Table, TicketSimulator, json_response, seed_ts


class DynamicsStore(TicketSimulator):
    """Tables, seed data, versions, row rendering, key lookups and error JSON of the Dynamics simulator."""

    #: The app registration's client id (the server's credential): the application user derives from it.
    client_id: ClassVar[str]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protection = ServiceProtection()
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

    def expire_delta_tokens(self) -> None:
        """Make every delta token issued so far answer 410 (the org's change tracking retention passed)."""
        self.delta_floor = self.next_version()

    def _limit_response(self, limit: str, retry_after: float) -> SimResponse:
        code, message = LIMIT_CODES[limit]
        text = message.format(limit=self.protection.limits[limit])
        return json_response(429, {"error": {"code": code, "message": text}},
                             **{"Retry-After": str(int(retry_after + 0.999))})  # fmt: skip

    def error(self, status: int, message: str, code: str | None = None) -> SimResponse:
        if status == 429:  # an injected 429 is a service protection answer, Retry-After included
            return self._limit_response("requests", 1.0)
        code = code or {400: BAD_REQUEST, 404: NOT_FOUND, 412: DUPLICATE}.get(status, "0x80040216")
        return json_response(status, {"error": {"code": code, "message": message}})

    # --- reading rows -----------------------------------------------------------------------------

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

    def _annotated(self, prefs: dict[str, str]) -> bool:
        wanted = prefs.get("odata.include-annotations", "")
        return wanted in ("*", "OData.Community.Display.V1.FormattedValue")

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
