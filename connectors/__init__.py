"""Pure connectors to external CRM/ERP systems: no Django ORM, no Celery (see ARCHITECTURE.md)."""

from connectors.base import Connector, Cursor, Record, Stream, WriteOutcome, WriteResult
from connectors.errors import (
    AuthExpired,
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)

__all__ = [
    "AuthExpired",
    "AuthFailed",
    "Connector",
    "ConnectorError",
    "Cursor",
    "InvalidConfig",
    "RateLimited",
    "Record",
    "Stream",
    "UnexpectedResponse",
    "VendorUnavailable",
    "WriteOutcome",
    "WriteResult",
]
