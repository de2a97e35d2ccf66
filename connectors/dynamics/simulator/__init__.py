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

One module a concern, each class a layer over `store.DynamicsStore`: `schema` (entity sets, option sets,
error codes), `limits` (service protection), `store` (tables, seed, versions, rendering, key lookups),
`query` (reads, paging, change tracking), `endpoints_rows` (writes), `batch`, `tickets` (agent helper,
notes, queues) and `server` (Entra ID, routes, the gate), which assembles `DynamicsSimulator`.
"""

from connectors.dynamics.simulator.limits import LIMIT_CODES, ServiceProtection
from connectors.dynamics.simulator.schema import (
    AGENT_STATES,
    API,
    BAD_REQUEST,
    CASE_STATUS,
    CASE_STATUS_BY_SEED,
    CURRENCIES,
    CURRENCY_IDS,
    CURRENCY_NAMES,
    DELTA_EXPIRED,
    DUPLICATE,
    ENTITY_SETS,
    FORMATTED,
    GUID,
    LEAD_STATUS,
    NOT_FOUND,
    ORDER_STATUS,
    ORDER_STATUS_BY_SEED,
    PRIORITY,
    QUEUES,
    WEB_PREFIX,
    EntitySet,
    guid,
    odata_time,
)
from connectors.dynamics.simulator.server import DynamicsSimulator

__all__ = [
    "AGENT_STATES",
    "API",
    "BAD_REQUEST",
    "CASE_STATUS",
    "CASE_STATUS_BY_SEED",
    "CURRENCIES",
    "CURRENCY_IDS",
    "CURRENCY_NAMES",
    "DELTA_EXPIRED",
    "DUPLICATE",
    "ENTITY_SETS",
    "FORMATTED",
    "GUID",
    "LEAD_STATUS",
    "LIMIT_CODES",
    "NOT_FOUND",
    "ORDER_STATUS",
    "ORDER_STATUS_BY_SEED",
    "PRIORITY",
    "QUEUES",
    "WEB_PREFIX",
    "DynamicsSimulator",
    "EntitySet",
    "ServiceProtection",
    "guid",
    "odata_time",
]
