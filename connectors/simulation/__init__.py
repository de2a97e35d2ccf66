"""Shared machinery for the vendor and channel simulators, one module a concern: `messages` (request,
response, routes, corrupted answers), `faults` (injected misbehaviour), `tokens` (bearer tokens),
`tables` (in-memory rows in change order), `seed` (deterministic multilingual seed data), `tls` (a local
CA), `server` (the threaded HTTP(S) server and the `Simulator` base), `tickets` (the ticketing base with
its agent helper and webhooks) and `admin` (calling a running simulator's admin endpoints from another
process). Every public name is re-exported here: import from `connectors.simulation`.
"""

from connectors.simulation.admin import SimulatorAdminError, admin_post
from connectors.simulation.faults import MALFORMED_KINDS, ErrorRule, Faults
from connectors.simulation.messages import (
    Route,
    SimRequest,
    SimResponse,
    json_response,
    proxy_error_page,
    reshape_json,
)
from connectors.simulation.seed import (
    DEFAULT_COUNTS,
    LOCALES,
    ORDER_STATUSES,
    SEED_EPOCH,
    TICKET_STATUSES,
    Seed,
    seed_ts,
)
from connectors.simulation.server import Simulator
from connectors.simulation.tables import Row, Table, now_s
from connectors.simulation.tickets import AGENT_STATES, TicketSimulator, WebhookTarget
from connectors.simulation.tls import TlsFiles, ensure_tls
from connectors.simulation.tokens import TokenStore

__all__ = [
    "AGENT_STATES",
    "DEFAULT_COUNTS",
    "LOCALES",
    "MALFORMED_KINDS",
    "ORDER_STATUSES",
    "SEED_EPOCH",
    "TICKET_STATUSES",
    "ErrorRule",
    "Faults",
    "Route",
    "Row",
    "Seed",
    "SimRequest",
    "SimResponse",
    "Simulator",
    "SimulatorAdminError",
    "Table",
    "TicketSimulator",
    "TlsFiles",
    "TokenStore",
    "WebhookTarget",
    "admin_post",
    "ensure_tls",
    "json_response",
    "now_s",
    "proxy_error_page",
    "reshape_json",
    "seed_ts",
]
