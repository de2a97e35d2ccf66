"""The simulated Dataverse org's schema: the entity sets the Web API exposes (columns, primary and alternate
keys, option sets with their labels), the seeded queues, currencies, the states an agent can set, the error
codes Dataverse answers with, and how ids and timestamps are written. Pure data, no state: every other
module of the simulator reads it."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from connectors.simulation import Row

API = "/api/data/v9.2"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"
DELTA_EXPIRED = "0x80044352"
NOT_FOUND = "0x80040217"
DUPLICATE = "0x80040237"
BAD_REQUEST = "0x80060888"
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

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


def created_s(row: Row) -> int:
    """A row's createdon as epoch seconds."""
    return int(dt.datetime.fromisoformat(str(row.data["createdon"]).replace("Z", "+00:00")).timestamp())
