"""The tenant overview (the console's home page): what needs an admin's attention today, in one read.

Connections with their breaker, last successful sync and lag per stream, dead letters waiting, the outbox
backlog, knowledge coverage gaps and reviews waiting, and the last 24 hours of chat. Each section is read only
for members who may see it (`OverviewSections`), and the page costs a fixed number of SQL queries however many
connections, streams, letters or knowledge bases there are, plus one Redis round trip for every breaker.
Without Redis the breakers read "unknown" and the rest of the page still renders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.db.models import Count, Min, Q
from django.utils import timezone

from apps.chat.models import Conversation
from apps.console.selectors.dashboards import TurnSummary, assistant_turns, turn_stats
from apps.core.deadlines import redis_call
from apps.integrations.conf import connector_registry
from apps.integrations.models import (
    Connection,
    DeadLetter,
    DeadLetterStatus,
    OutboxMessage,
    OutboxStatus,
    StreamState,
)
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.selectors import kb_list, kbs_coverage, member_may_edit, review_queue
from apps.observability.collectors import breaker_snapshot
from apps.tenants import roles
from apps.tenants.models import Membership, Tenant

logger = logging.getLogger(__name__)

#: The chat figures cover this much time.
CHAT_SPAN = timedelta(hours=24)
#: A stream is behind when its last success is older than this many of its sync intervals.
BEHIND_INTERVALS = 2
#: Breaker state shown when Redis cannot be read.
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class OverviewSections:
    """Which sections a member sees: each needs the permission of the page where its problems are fixed."""

    connections: bool  # connectors or sync console
    sync_queues: bool  # dead letters and outbox: the sync console
    knowledge_gaps: bool  # the knowledge area
    reviews: bool  # approving texts
    chat: bool  # the dashboards

    @classmethod
    def for_member(cls, *, user: Any, membership: Membership | None) -> OverviewSections:
        def can(perm: str) -> bool:
            return roles.can(user, membership, perm)

        return cls(
            connections=can(roles.MANAGE_CONNECTIONS) or can(roles.OPERATE_SYNC),
            sync_queues=can(roles.OPERATE_SYNC),
            knowledge_gaps=can(roles.EDIT_KNOWLEDGE),
            reviews=can(roles.REVIEW_KNOWLEDGE),
            chat=can(roles.VIEW_DASHBOARDS),
        )


@dataclass(frozen=True, slots=True)
class StreamRow:
    stream: str
    paused: bool
    last_success_at: datetime | None
    lag: timedelta | None  # since the last success; None before the first
    behind: bool


@dataclass
class ConnectionRow:
    connection: Connection
    label: str
    breaker: str  # closed, open, half_open, or unknown (Redis unreadable)
    retry_at: datetime | None  # when an open breaker lets the next probe through
    streams: list[StreamRow] = field(default_factory=list)
    dead_letters: int = 0
    outbox_pending: int = 0  # never tried yet
    outbox_retrying: int = 0  # failed at least once, will be retried
    outbox_oldest: datetime | None = None

    @property
    def last_success_at(self) -> datetime | None:
        """The newest success of any of its streams."""
        return max((s.last_success_at for s in self.streams if s.last_success_at), default=None)

    @property
    def max_lag(self) -> timedelta | None:
        return max((s.lag for s in self.streams if s.lag is not None), default=None)

    @property
    def streams_behind(self) -> int:
        return sum(s.behind for s in self.streams)

    @property
    def outbox_backlog(self) -> int:
        return self.outbox_pending + self.outbox_retrying

    @property
    def needs_attention(self) -> bool:
        return self.connection.enabled and (
            self.breaker in ("open", "half_open")
            or bool(self.streams_behind)
            or bool(self.dead_letters)
            or bool(self.outbox_retrying)
            or self.connection.last_test_ok is False
        )


@dataclass(frozen=True, slots=True)
class CoverageGap:
    """One knowledge base's locale with articles lacking a current published text."""

    kb: KnowledgeBase
    locale: str
    total: int
    needs_update: int
    untranslated: int  # no text, or a text never published yet

    @property
    def percent(self) -> float:
        return 100 * (self.total - self.needs_update - self.untranslated) / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class ChatDay:
    conversations: int
    summary: TurnSummary


@dataclass
class TenantOverview:
    """Everything the tenant home shows; a section the member may not see is None."""

    sections: OverviewSections
    member_count: int
    connections: list[ConnectionRow] | None = None
    breakers_unknown: bool = False
    knowledge_bases: int | None = None
    coverage_gaps: list[CoverageGap] | None = None
    reviews_waiting: int | None = None
    chat: ChatDay | None = None

    @property
    def open_breakers(self) -> int:
        return sum(row.breaker in ("open", "half_open") for row in self.connections or ())

    @property
    def streams_behind(self) -> int:
        return sum(row.streams_behind for row in self.connections or () if row.connection.enabled)

    @property
    def dead_letters(self) -> int:
        return sum(row.dead_letters for row in self.connections or ())

    @property
    def outbox_backlog(self) -> int:
        return sum(row.outbox_backlog for row in self.connections or ())

    @property
    def outbox_retrying(self) -> int:
        return sum(row.outbox_retrying for row in self.connections or ())

    @property
    def failed_tests(self) -> int:
        return sum(row.connection.last_test_ok is False for row in self.connections or ())

    @property
    def all_clear(self) -> bool:
        """Nothing this member can see needs attention (sections they cannot see do not count)."""
        return not (
            self.open_breakers
            or self.streams_behind
            or self.failed_tests
            or (self.sections.sync_queues and (self.dead_letters or self.outbox_retrying))
            or self.coverage_gaps
            or self.reviews_waiting
        )


def tenant_overview(
    *, tenant: Tenant, user: Any, membership: Membership | None, now: datetime | None = None
) -> TenantOverview:
    """The current tenant's overview for `user`, reading only the sections they may see.

    At most eleven queries (members; connections, stream states, dead letters, outbox; knowledge bases and
    their coverage (two); reviews; conversations and turns) and one Redis pipeline, whatever the data.
    """
    now = now or timezone.now()
    sections = OverviewSections.for_member(user=user, membership=membership)
    members = Membership.objects.filter(tenant=tenant).count()
    overview = TenantOverview(sections=sections, member_count=members)
    if sections.connections:
        overview.connections, overview.breakers_unknown = _connections(now=now, queues=sections.sync_queues)
    if sections.knowledge_gaps:
        overview.knowledge_bases, overview.coverage_gaps = _coverage_gaps(membership=membership)
    if sections.reviews:
        overview.reviews_waiting = review_queue(
            locales=getattr(membership, "locales", None) or (),
            regions=getattr(membership, "regions", None) or (),
        ).count()
    if sections.chat:
        since = now - CHAT_SPAN
        overview.chat = ChatDay(
            conversations=Conversation.objects.filter(created_at__gte=since).count(),
            summary=TurnSummary.from_row(assistant_turns(since).aggregate(**turn_stats())),
        )
    return overview


def _connections(*, now: datetime, queues: bool) -> tuple[list[ConnectionRow], bool]:
    """The tenant's connections with streams, breakers and (with `queues`) dead letters and outbox backlog."""
    connections = list(Connection.objects.order_by("name", "id"))
    if not connections:
        return [], False
    labels = {kind: cls.label for kind, cls in connector_registry().items()}
    breakers, unknown = _breakers(connections)
    rows = {
        c.pk: ConnectionRow(
            connection=c, label=labels.get(c.kind, c.kind), breaker=breakers[i][0], retry_at=breakers[i][1]
        )
        for i, c in enumerate(connections)
    }
    for state in StreamState.objects.order_by("stream"):
        if state.connection_id in rows:
            rows[state.connection_id].streams.append(_stream_row(state, now=now))
    if queues:
        for connection_id, count in (
            DeadLetter.objects.filter(status=DeadLetterStatus.OPEN)
            .values("connection_id")
            .annotate(n=Count("id"))
            .values_list("connection_id", "n")
            .order_by()
        ):
            if connection_id in rows:
                rows[connection_id].dead_letters = count
        for row in (
            OutboxMessage.objects.filter(status__in=(OutboxStatus.PENDING, OutboxStatus.DELIVERING))
            .values("connection_id")
            .annotate(
                pending=Count("id", filter=Q(attempts=0)),
                retrying=Count("id", filter=Q(attempts__gt=0)),
                oldest=Min("created_at"),
            )
            .order_by()
        ):
            if (target := rows.get(row["connection_id"])) is not None:
                target.outbox_pending, target.outbox_retrying = row["pending"], row["retrying"]
                target.outbox_oldest = row["oldest"]
    return list(rows.values()), unknown


def _stream_row(state: StreamState, *, now: datetime) -> StreamRow:
    success = state.last_success_at
    waiting = now - (success or state.created_at)  # a stream that never succeeded waits since it was set up
    return StreamRow(
        stream=state.stream,
        paused=state.paused,
        last_success_at=success,
        lag=now - success if success else None,
        behind=not state.paused and waiting > timedelta(seconds=BEHIND_INTERVALS * state.interval_seconds),
    )


def _breakers(connections: Sequence[Connection]) -> tuple[list[tuple[str, datetime | None]], bool]:
    """Each connection's breaker (one Redis round trip); all "unknown" when Redis cannot be read."""
    try:
        with redis_call():
            return breaker_snapshot([(c.tenant_id, c.pk) for c in connections]), False
    except redis.RedisError as exc:
        logger.warning("overview: breaker states unavailable: %s", type(exc).__name__)
        return [(UNKNOWN, None)] * len(connections), True


def _coverage_gaps(*, membership: Membership | None) -> tuple[int, list[CoverageGap]]:
    """The knowledge bases' locales (those the member may edit) with unpublished or outdated articles."""
    kbs = list(kb_list().order_by("name"))
    gaps = []
    coverage = kbs_coverage(kbs=kbs)
    for kb in kbs:
        for cov in coverage.get(kb.pk, []):
            untranslated = cov.missing + cov.in_progress
            gap = cov.total and (cov.needs_update or untranslated)
            if gap and member_may_edit(membership=membership, locale=cov.locale):
                gaps.append(CoverageGap(kb, cov.locale, cov.total, cov.needs_update, untranslated))
    return len(kbs), gaps
