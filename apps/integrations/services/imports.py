"""Reading a connection's records for another app: the public way into a vendor (knowledge imports articles).

Other apps never build connectors or sessions themselves. This reads a whole stream the way the sync engine
does: after the data policy allowed the connection's region, through the guarded outbound session (SSRF
guard, trust, redaction), the connection's circuit breaker and token bucket, shared by every worker. Every
failure comes back as one typed error that says whether a retry may help (apps/integrations/retry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from apps.core.context import current_tenant
from apps.core.errors import HubError
from apps.integrations.conf import connector_class
from apps.integrations.models import Connection
from apps.integrations.resilience import BreakerOpen, connection_session, penalize_rate_limited
from apps.integrations.retry import failure_of
from apps.policies.services import transfer_check
from connectors.base import Record
from connectors.errors import ConnectorError


class RecordsReadFailed(HubError):
    """The vendor could not be read; nothing was returned. `transient` says whether a retry may help,
    `retry_after` how long to wait at least, `breaker_open_until` when an open breaker probes again."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None,
        breaker_open_until: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.retry_after = retry_after
        self.breaker_open_until = breaker_open_until


def connection_records_read(
    *, connection: Connection, stream: str, fields: Mapping[str, str] | None = None
) -> list[Record]:
    """Read all of `stream`, oldest first, in one go: a failure mid-read leaves the caller nothing.

    `fields` maps extra canonical fields for this read; the connection's own field map still wins. Raises
    TransferRefused when the data policy forbids the connection's region (checked before anything is sent;
    it may have changed since the connection was saved) and RecordsReadFailed when the vendor fails.
    Call inside the connection's tenant context.
    """
    transfer_check(
        tenant=current_tenant(),
        destination_region=connection.endpoint_region,
        purpose=f"connector:{connection.kind}",
    )
    config: dict[str, Any] = connection.connector_config()
    if fields:
        field_map = dict(config.get("field_map") or {})
        field_map[stream] = {**fields, **(field_map.get(stream) or {})}
        config["field_map"] = field_map
    secrets = list(connection.secrets.values())
    try:
        connector = connector_class(connection.kind)(config, session=connection_session(connection))
        return list(connector.read(stream))
    except (ConnectorError, BreakerOpen, RedisError) as exc:
        failure = failure_of(exc, secrets=secrets)
        penalize_rate_limited(exc, connection=connection)
        raise RecordsReadFailed(
            failure.message,
            transient=failure.transient,
            retry_after=failure.retry_after,
            breaker_open_until=exc.retry_at if isinstance(exc, BreakerOpen) else None,
        ) from None
