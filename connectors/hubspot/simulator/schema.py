"""The simulated portal's schema: object types and the canonical streams they serve, their properties
(unique ones, required ones), association type ids and labels, object type ids and the names v4 accepts,
the default ticket pipeline, search limits and the portal's ids. Pure data, no state: every other module
of the simulator reads it."""

from __future__ import annotations

import time

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
