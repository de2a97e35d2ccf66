"""Reads for the sync console: per-connection stream status, runs and stream state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from apps.core.errors import NotFound
from apps.integrations.conf import connector_class, connector_registry
from apps.integrations.models import Connection, RunStatus, StreamState, SyncedRecord, SyncRun
from apps.integrations.resilience import breaker_for
from apps.integrations.selectors.webhooks import webhook_rejections
from connectors.errors import ConnectorError
from connectors.http import HttpSession

#: How many recent runs of a stream the console's error rate covers.
ERROR_RATE_RUNS = 20


@dataclass(frozen=True, slots=True)
class StreamOverview:
    """One stream of one connection as the sync console shows it."""

    stream: str
    state: Any  # StreamState | None (never synced: no state row, no schedule yet)
    last_run: Any  # SyncRun | None
    recent_finished: int
    recent_failed: int
    records: int
    lag: timedelta | None

    @property
    def error_rate(self) -> float | None:
        """Failed share of the last finished runs (of the last ERROR_RATE_RUNS), None before any."""
        return self.recent_failed / self.recent_finished if self.recent_finished else None


@dataclass(frozen=True, slots=True)
class ConnectionOverview:
    connection: Connection
    label: str
    breaker: Any  # resilience.BreakerState
    streams: list[StreamOverview]
    rejected: dict[str, int]
    config_error: bool

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def readable_streams(connection: Connection) -> list[str] | None:
    """The streams the console offers for `connection`, or None when its configuration is broken."""
    try:
        connector = connector_class(connection.kind)(connection.connector_config(), session=HttpSession())
    except ConnectorError:
        return None
    return [stream.name for stream in connector.streams() if stream.readable]


def sync_overview(*, now: datetime | None = None) -> list[ConnectionOverview]:
    """Every connection of the current tenant with its streams' sync status, in a fixed number of queries.

    Four queries whatever the number of connections and streams (connections, stream states, the last
    ERROR_RATE_RUNS runs per stream through a window function, record counts), plus one Redis call per
    connection for its breaker and one pipelined round trip for the webhook rejection counters.
    """
    now = now or timezone.now()
    connections = list(Connection.objects.order_by("name", "id"))
    ids = [c.pk for c in connections]
    states = {(s.connection_id, s.stream): s for s in StreamState.objects.filter(connection_id__in=ids)}
    recent = (
        SyncRun.objects.filter(connection_id__in=ids)
        .annotate(
            rn=Window(
                RowNumber(),
                partition_by=[F("connection_id"), F("stream")],
                order_by=[F("created_at").desc(), F("id").desc()],
            )
        )
        .filter(rn__lte=ERROR_RATE_RUNS)
        .defer("error")
    )
    last: dict[tuple[Any, str], Any] = {}
    finished: dict[tuple[Any, str], list[int]] = {}
    for run in recent:
        key = (run.connection_id, run.stream)
        if run.rn == 1:
            last[key] = run
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            counts = finished.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += run.status == RunStatus.FAILED
    records = {
        (row["connection_id"], row["stream"]): row["n"]
        for row in SyncedRecord.objects.filter(connection_id__in=ids, deleted=False)
        .values("connection_id", "stream")
        .annotate(n=Count("id"))
    }
    rejected = webhook_rejections(connections=connections)
    labels = {kind: cls.label for kind, cls in connector_registry().items()}
    result = []
    for connection in connections:
        names = readable_streams(connection)
        rows = []
        for stream in names or []:
            key = (connection.pk, stream)
            state = states.get(key)
            done, failed = finished.get(key, [0, 0])
            success = state.last_success_at if state is not None else None
            rows.append(
                StreamOverview(
                    stream=stream,
                    state=state,
                    last_run=last.get(key),
                    recent_finished=done,
                    recent_failed=failed,
                    records=records.get(key, 0),
                    lag=now - success if success is not None else None,
                )
            )
        result.append(
            ConnectionOverview(
                connection=connection,
                label=labels.get(connection.kind, connection.kind),
                breaker=breaker_for(connection).state(),
                streams=rows,
                rejected=rejected.get(connection.pk, {}),
                config_error=names is None,
            )
        )
    return result


def sync_run_list(*, connection: Connection, stream: str) -> QuerySet[Any]:
    """A stream's runs, newest first, with their attempt counts (one query per page)."""
    return (
        SyncRun.objects.filter(connection=connection, stream=stream)
        .annotate(attempt_count=Count("attempts"))
        .order_by("-created_at", "-id")
    )


def sync_run_get(*, pk: Any) -> Any:
    """One run of the current tenant with its connection, or NotFound."""
    run = SyncRun.objects.select_related("connection").filter(pk=pk).first()
    if run is None:
        raise NotFound("Sync run not found.")
    return run


def stream_state_find(*, connection: Connection, stream: str) -> Any:
    """The stream's state row, or None before its first sync (reading never creates it)."""
    return StreamState.objects.filter(connection=connection, stream=stream).first()
