"""Salesforce REST simulator (HTTPS): OAuth token endpoint, SOQL query/queryAll with nextRecordsUrl
paging, sObject and Collections upsert by external id, JSON-array error envelopes, Sforce-Limit-Info;
CaseComments (IsPublished), case statuses and an agent helper that announces its activity as an Outbound
Message (SOAP notifications) to a URL holding the shared secret. Also the calls a typical integration
makes beyond sync: CRUD by id, COUNT queries, updated/deleted ids, describe, /composite and sObject
Collections (docs/vendors.md lists them with their tests).

One module a concern, each class a layer over `store.SalesforceStore`: `schema` (sObjects, fields, ids),
`store` (tables, seed, rows, validation, error envelopes), `soql` (the query language and /query),
`endpoints_sobjects`, `endpoints_composite` (/composite and Collections), `cases` (agent helper, Outbound
Messages) and `server` (credentials, routes, OAuth, API limits), which assembles `SalesforceSimulator`.
Fault injection, TLS, tokens and the HTTP server are the shared base's (`connectors/simulation/`).
"""

from connectors.salesforce.simulator.endpoints_composite import ROLLED_BACK
from connectors.salesforce.simulator.schema import (
    AGENT_STATUSES,
    AGENT_USER,
    API,
    CLOSED_STATUSES,
    DEFAULT_QUEUE,
    INTEGRATION_USER,
    LANGUAGE,
    OBJECTS,
    ORG_ID,
    READ_ONLY,
    REFERENCE_FIELDS,
    STREAM_OBJECT,
    SYSTEM_FIELDS,
    sf_id,
    sf_time,
)
from connectors.salesforce.simulator.server import SalesforceSimulator
from connectors.salesforce.simulator.soql import QueryError

__all__ = [
    "AGENT_STATUSES",
    "AGENT_USER",
    "API",
    "CLOSED_STATUSES",
    "DEFAULT_QUEUE",
    "INTEGRATION_USER",
    "LANGUAGE",
    "OBJECTS",
    "ORG_ID",
    "READ_ONLY",
    "REFERENCE_FIELDS",
    "ROLLED_BACK",
    "STREAM_OBJECT",
    "SYSTEM_FIELDS",
    "QueryError",
    "SalesforceSimulator",
    "sf_id",
    "sf_time",
]
