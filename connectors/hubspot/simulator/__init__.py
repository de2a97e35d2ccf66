"""HubSpot CRM v3 simulator: bearer tokens (private app and OAuth refresh), list paging with `after`,
search with the 10,000-result cap, batch upsert with idProperty and 207 partial failures, 429 policies;
engagements on tickets (notes and e-mails, associations v4, batch read, reads by idProperty) and an
agent helper that announces its activity as signed webhook v3 events (ticket.propertyChange). Also CRUD
by id, batch create/update/archive, associations v4 between contacts, companies and tickets, and the
properties API (docs/vendors.md lists them with their tests).

One module a concern, each class a layer over `store.HubSpotStore`: `schema` (object types, properties,
association types), `store` (tables, seed, objects, validation, error envelope), `associations` (the
association graph), `search`, `endpoints_objects`, `endpoints_batch`, `endpoints_associations` (v4),
`tickets` (pipelines, engagements, agent helper, signed webhooks) and `server` (tokens, routes, 429
policies, rate-limit headers), which assembles `HubSpotSimulator`. Fault injection, TLS, tokens and the
HTTP server are the shared base's (`connectors/simulation/`).
"""

from connectors.hubspot.simulator.schema import (
    AGENT_STAGES,
    APP_ID,
    ASSOCIATION_TYPES,
    DAILY_LIMIT,
    DEFAULT_PIPELINE,
    ENGAGEMENTS,
    LINK_TYPES,
    OBJECT_TYPE_IDS,
    OBJECTS,
    PORTAL_ID,
    PROPERTIES,
    REQUIRED_ON_CREATE,
    SEARCH_LIMITS,
    TYPE_ALIASES,
    UNIQUE,
    iso_ms,
    modified_property,
)
from connectors.hubspot.simulator.server import HubSpotSimulator

__all__ = [
    "AGENT_STAGES",
    "APP_ID",
    "ASSOCIATION_TYPES",
    "DAILY_LIMIT",
    "DEFAULT_PIPELINE",
    "ENGAGEMENTS",
    "LINK_TYPES",
    "OBJECTS",
    "OBJECT_TYPE_IDS",
    "PORTAL_ID",
    "PROPERTIES",
    "REQUIRED_ON_CREATE",
    "SEARCH_LIMITS",
    "TYPE_ALIASES",
    "UNIQUE",
    "HubSpotSimulator",
    "iso_ms",
    "modified_property",
]
