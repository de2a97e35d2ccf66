"""Dashboard reads: a tenant's conversations, answers, sync health, costs and translation coverage, and the
same across every tenant for platform operators.

Every figure is an aggregate computed in Postgres (time buckets with date_bin, latency percentiles with
percentile_cont), so a page costs a fixed number of queries however many conversations, connections or
knowledge bases there are: about a dozen for a tenant, five per region for the operator page.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Aggregate, Count, F, FloatField, Func, Q, QuerySet, Sum, Value
from django.db.models import DateTimeField as DateTimeOutput
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.chat.models import Conversation, Feedback, FeedbackKind, Handoff, LlmUsage, Message, Outcome, Role
from apps.core.context import current_tenant
from apps.integrations.models import DeadLetter, DeadLetterStatus
from apps.integrations.selectors.sync import ConnectionOverview, sync_overview
from apps.knowledge.selectors import kb_list, kbs_coverage
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    key: str
    label: Any
    span: timedelta
    step: timedelta  # one chart bucket
    step_label: Any  # "per minute", "per hour", …


WINDOWS = {
    "1h": TimeWindow("1h", _("Last hour"), timedelta(hours=1), timedelta(minutes=1), _("per minute")),
    "24h": TimeWindow("24h", _("Last 24 hours"), timedelta(hours=24), timedelta(hours=1), _("per hour")),
    "7d": TimeWindow("7d", _("Last 7 days"), timedelta(days=7), timedelta(hours=6), _("per 6 hours")),
}
DEFAULT_WINDOW = "24h"

#: Outcomes in the order the charts stack them (good answers at the bottom).
OUTCOMES = (Outcome.ANSWERED, Outcome.ACTION, Outcome.FALLBACK, Outcome.HANDOFF, Outcome.ERROR)


class DateBin(Func):
    """Postgres date_bin(step, ts, origin): the start of the fixed-size bucket `ts` falls in."""

    function = "date_bin"
    output_field = DateTimeOutput()

    def __init__(self, step: timedelta, expression: Any, origin: datetime) -> None:
        super().__init__(Value(step), expression, Value(origin))


class PercentileCont(Aggregate):
    """Postgres percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): interpolated percentile."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        # A float formatted into the SQL, never user input: float() refuses anything else.
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def _origin(now: datetime, window: TimeWindow) -> datetime:
    """The first bucket's start: `now` rounded up to a step, minus the span (stable within a step)."""
    step = window.step.total_seconds()
    end = datetime.fromtimestamp((now.timestamp() // step + 1) * step, tz=now.tzinfo)
    return end - window.span


def bucket_starts(*, now: datetime, window: TimeWindow) -> list[datetime]:
    origin = _origin(now, window)
    return [origin + window.step * i for i in range(int(window.span / window.step))]


def turn_stats() -> dict[str, Any]:
    """Aggregates over assistant turns: counts by outcome and the latency percentiles."""
    stats: dict[str, Any] = {o.value: Count("id", filter=Q(outcome=o.value)) for o in OUTCOMES}
    stats["turns"] = Count("id")
    stats["p50"] = PercentileCont("latency_ms", 0.5)
    stats["p95"] = PercentileCont("latency_ms", 0.95)
    return stats


@dataclass
class TurnSummary:
    turns: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    p50: float | None = None
    p95: float | None = None

    def rate(self, outcome: str) -> float | None:
        """Share of turns with `outcome` in percent (None without turns: no rate, not 0 %)."""
        return 100 * self.by_outcome.get(outcome, 0) / self.turns if self.turns else None

    @property
    def fallback_rate(self) -> float | None:
        return self.rate(Outcome.FALLBACK)

    @property
    def handoff_rate(self) -> float | None:
        return self.rate(Outcome.HANDOFF)

    @property
    def error_rate(self) -> float | None:
        return self.rate(Outcome.ERROR)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TurnSummary:
        return cls(
            turns=row["turns"] or 0,
            by_outcome={o.value: row[o.value] or 0 for o in OUTCOMES},
            p50=row["p50"],
            p95=row["p95"],
        )


@dataclass
class ChannelRow:
    channel_kind: str
    conversations: int
    summary: TurnSummary


@dataclass
class CostRow:
    region: str
    channel_kind: str
    model: str
    calls: int
    tokens: int
    cost_usd: Decimal


@dataclass
class SyncRow:
    overview: ConnectionOverview
    dead_letters: int

    @property
    def last_run(self) -> Any:
        """The newest run of any of the connection's streams."""
        runs = [s.last_run for s in self.overview.streams if s.last_run is not None]
        return max(runs, key=lambda r: r.created_at, default=None)

    @property
    def max_lag(self) -> timedelta | None:
        lags = [s.lag for s in self.overview.streams if s.lag is not None]
        return max(lags, default=None)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.overview.streams)


@dataclass
class LocaleRow:
    locale: str
    total: int
    published: int
    needs_update: int
    missing: int

    @property
    def percent(self) -> float:
        return 100 * self.published / self.total if self.total else 0.0


class WindowTotals:
    """What both dashboards add up over their window (the dataclasses below hold the two lists)."""

    conversations: list[int]
    costs: list[CostRow]

    @property
    def conversation_total(self) -> int:
        return sum(self.conversations)

    @property
    def cost_total(self) -> Decimal:
        return sum((c.cost_usd for c in self.costs), Decimal(0))

    def cost_by(self, attribute: str) -> list[tuple[str, float]]:
        """Cost summed by region, channel_kind or model, largest first."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for row in self.costs:
            totals[getattr(row, attribute)] += row.cost_usd
        return sorted(((k, float(v)) for k, v in totals.items()), key=lambda kv: (-kv[1], kv[0]))


@dataclass
class CsatRow:
    """CSAT ratings (1-5) after handoffs of one channel kind, locale or region (`key`)."""

    key: str
    count: int
    total: int

    @property
    def average(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class HandoffFigures:
    """Handoffs started in the window, the median time to their first agent reply, and the CSAT given."""

    handoffs: int = 0
    answered: int = 0  # of them, with an agent reply
    median_first_reply: float | None = None  # seconds
    csat: CsatRow = field(default_factory=lambda: CsatRow("", 0, 0))
    by_channel: list[CsatRow] = field(default_factory=list)
    by_locale: list[CsatRow] = field(default_factory=list)
    by_region: list[CsatRow] = field(default_factory=list)

    @property
    def tables(self) -> list[tuple[Any, list[CsatRow], str]]:
        """(caption, rows, what they are by) of the CSAT tables, for the template."""
        return [
            (_("CSAT by channel"), self.by_channel, "channel"),
            (_("CSAT by locale"), self.by_locale, "locale"),
            (_("CSAT by region"), self.by_region, "region"),
        ]


class EpochSeconds(Func):
    """Postgres EXTRACT(EPOCH FROM interval): a duration in seconds."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


def _csat_rollup(rows: list[dict[str, Any]], key: str) -> list[CsatRow]:
    totals: dict[str, list[int]] = {}
    for row in rows:
        entry = totals.setdefault(row[key], [0, 0])
        entry[0] += row["n"]
        entry[1] += row["total"] or 0
    return [CsatRow(k, n, total) for k, (n, total) in sorted(totals.items())]


def handoff_figures(*, since: datetime) -> HandoffFigures:
    """The window's handoffs and CSAT in two grouped queries: CSAT per channel kind, locale and region is
    one grouping by all three, rolled up here (sums and counts, so the averages stay exact)."""
    stats = Handoff.objects.filter(created_at__gte=since).aggregate(
        n=Count("id"),
        answered=Count("id", filter=Q(first_agent_reply_at__isnull=False)),
        median=PercentileCont(
            EpochSeconds(F("first_agent_reply_at") - F("created_at")),
            0.5,
            filter=Q(first_agent_reply_at__isnull=False),
        ),
    )
    home = current_tenant().region
    rows: list[dict[str, Any]] = [
        {**row, "region": row["region"] or home}
        for row in Feedback.objects.filter(
            kind=FeedbackKind.CSAT, created_at__gte=since, rating__gte=1, rating__lte=5
        )
        .values(
            channel_kind=F("conversation__channel_kind"),
            locale=F("conversation__locale"),
            region=F("conversation__region"),
        )
        .annotate(n=Count("id"), total=Sum("rating"))
        .order_by()
    ]
    count = sum(int(r["n"]) for r in rows)
    return HandoffFigures(
        handoffs=stats["n"] or 0,
        answered=stats["answered"] or 0,
        median_first_reply=stats["median"],
        csat=CsatRow("", count, sum(int(r["total"] or 0) for r in rows)),
        by_channel=_csat_rollup(rows, "channel_kind"),
        by_locale=_csat_rollup(rows, "locale"),
        by_region=_csat_rollup(rows, "region"),
    )


@dataclass
class TenantDashboard(WindowTotals):
    window: TimeWindow
    starts: list[datetime]
    conversations: list[int]
    turns_by_outcome: dict[str, list[int]]
    p50: list[float | None]
    p95: list[float | None]
    summary: TurnSummary
    channels: list[ChannelRow]
    costs: list[CostRow]
    sync: list[SyncRow]
    coverage: list[LocaleRow]
    handoffs: HandoffFigures = field(default_factory=HandoffFigures)  # issue 18: handoffs and CSAT

    @property
    def empty(self) -> bool:
        return not (self.summary.turns or any(self.conversations) or self.costs)


def _series_by_bucket(starts: list[datetime], rows: list[Any], key: str, default: Any) -> list[Any]:
    by_start = {row["bucket"]: row[key] for row in rows}
    return [by_start.get(start, default) for start in starts]


def assistant_turns(since: datetime) -> QuerySet[Message]:
    return Message.objects.filter(role=Role.ASSISTANT, created_at__gte=since).exclude(outcome="")


def tenant_dashboard(*, window: TimeWindow, now: datetime | None = None) -> TenantDashboard:
    """The current tenant's dashboard over `window`, in a fixed number of queries.

    Conversations per bucket, turns per bucket and outcome with their latency percentiles, the whole window's
    summary, a row per channel kind, costs per region/channel/model, the sync overview with open dead letters
    per connection, and translation coverage per locale summed over the knowledge bases.
    """
    now = now or timezone.now()
    starts = bucket_starts(now=now, window=window)
    origin = starts[0]
    bucket = DateBin(window.step, F("created_at"), origin)
    conversation_rows = list(
        Conversation.objects.filter(created_at__gte=origin)
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    turn_rows = list(
        assistant_turns(origin).annotate(bucket=bucket).values("bucket").annotate(**turn_stats()).order_by()
    )
    summary = TurnSummary.from_row(assistant_turns(origin).aggregate(**turn_stats()))
    channel_rows = (
        assistant_turns(origin)
        .values(channel_kind=F("conversation__channel_kind"))
        .annotate(conversations=Count("conversation_id", distinct=True), **turn_stats())
        .order_by("channel_kind")
    )
    costs = [
        CostRow(
            region=row["region"],
            channel_kind=row["channel_kind"],
            model=row["model"],
            calls=row["calls"],
            tokens=row["tokens"] or 0,
            cost_usd=row["cost"] or Decimal(0),
        )
        for row in LlmUsage.objects.filter(created_at__gte=origin)
        .values("region", "channel_kind", "model")
        .annotate(
            calls=Count("id"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")), cost=Sum("cost_usd")
        )
        .order_by("-cost", "region", "channel_kind", "model")
    ]
    return TenantDashboard(
        window=window,
        starts=starts,
        conversations=_series_by_bucket(starts, conversation_rows, "n", 0),
        turns_by_outcome={o.value: _series_by_bucket(starts, turn_rows, o.value, 0) for o in OUTCOMES},
        p50=_series_by_bucket(starts, turn_rows, "p50", None),
        p95=_series_by_bucket(starts, turn_rows, "p95", None),
        summary=summary,
        channels=[
            ChannelRow(row["channel_kind"], row["conversations"], TurnSummary.from_row(row))
            for row in channel_rows
        ],
        costs=costs,
        sync=sync_health(now=now),
        coverage=translation_coverage(),
        handoffs=handoff_figures(since=origin),
    )


def sync_health(*, now: datetime | None = None) -> list[SyncRow]:
    """The sync overview (last run, lag, records, breaker per connection) with its open dead letters."""
    overview = sync_overview(now=now)
    dead = dict(
        DeadLetter.objects.filter(status=DeadLetterStatus.OPEN)
        .values("connection_id")
        .annotate(n=Count("id"))
        .values_list("connection_id", "n")
        .order_by()
    )
    return [SyncRow(overview=row, dead_letters=dead.get(row.connection.pk, 0)) for row in overview]


def translation_coverage() -> list[LocaleRow]:
    """Per locale, over every knowledge base: articles with a current published text out of all articles."""
    totals: dict[str, list[int]] = {}
    for rows in kbs_coverage(kbs=list(kb_list())).values():
        for cov in rows:
            entry = totals.setdefault(cov.locale, [0, 0, 0, 0])
            entry[0] += cov.total
            entry[1] += cov.published
            entry[2] += cov.needs_update
            entry[3] += cov.missing
    return [LocaleRow(locale, *counts) for locale, counts in sorted(totals.items())]


# --- platform operators -----------------------------------------------------------------------------------
@dataclass
class TenantRow:
    tenant: Tenant
    conversations: int = 0
    summary: TurnSummary = field(default_factory=TurnSummary)
    cost_usd: Decimal = Decimal(0)
    connections: int = 0
    open_breakers: int = 0
    dead_letters: int = 0
    outbox_failed: int = 0
    max_lag: float | None = None  # seconds


@dataclass
class PlatformDashboard(WindowTotals):
    window: TimeWindow
    starts: list[datetime]
    conversations: list[int]
    turns_by_outcome: dict[str, list[int]]
    tenants: list[TenantRow]
    costs: list[CostRow]
    unavailable_regions: list[str]

    @property
    def empty(self) -> bool:
        return not (any(self.conversations) or any(t.summary.turns for t in self.tenants) or self.costs)


def _region_aliases() -> list[str]:
    return [f"region_{code}" for code in settings.HUB_REGIONS]


def _platform_region(
    alias: str, *, origin: datetime, window: TimeWindow
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """One region's per-tenant aggregates: four grouped queries whatever the number of tenants."""
    bucket = DateBin(window.step, F("created_at"), origin)
    conversations = list(
        Conversation.all_tenants.using(alias)
        .filter(created_at__gte=origin)
        .annotate(bucket=bucket)
        .values("tenant_id", "bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    turns = (
        Message.all_tenants.using(alias)
        .filter(role=Role.ASSISTANT, created_at__gte=origin)
        .exclude(outcome="")
    )
    per_bucket = list(
        turns.annotate(bucket=bucket)
        .values("bucket")
        .annotate(**{o.value: Count("id", filter=Q(outcome=o.value)) for o in OUTCOMES})
        .order_by()
    )
    per_tenant = list(turns.values("tenant_id").annotate(**turn_stats()).order_by())
    costs = list(
        LlmUsage.all_tenants.using(alias)
        .filter(created_at__gte=origin)
        .values("tenant_id", "region", "channel_kind", "model")
        .annotate(
            calls=Count("id"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")), cost=Sum("cost_usd")
        )
        .order_by()
    )
    return conversations, per_bucket, per_tenant, costs


def platform_dashboard(*, window: TimeWindow, now: datetime | None = None) -> PlatformDashboard:
    """Every tenant in every region over `window`: activity, answer quality, cost and sync health.

    Sync health (outbox, dead letters, lag, breakers) comes from the same scrape-time snapshot `/metrics`
    serves (briefly cached in Redis), so the page and the alerts agree. A region that cannot be read is
    named on the page instead of failing it.
    """
    from apps.observability.collectors import breaker_states, database_snapshot

    now = now or timezone.now()
    starts = bucket_starts(now=now, window=window)
    origin = starts[0]
    tenants = {
        t.pk: TenantRow(tenant=t) for t in Tenant.objects.select_related("home_region").order_by("name")
    }
    conversations = [0] * len(starts)
    by_outcome = {o.value: [0] * len(starts) for o in OUTCOMES}
    index = {start: i for i, start in enumerate(starts)}
    cost_totals: dict[tuple[str, str, str], list[Any]] = {}
    unavailable = []
    for alias in _region_aliases():
        try:
            conv_rows, bucket_rows, tenant_rows, cost_rows = _platform_region(
                alias, origin=origin, window=window
            )
        except Exception as exc:  # one unreachable region must not hide the others
            logger.warning("dashboard: region %s unreadable: %s", alias, type(exc).__name__)
            unavailable.append(alias.removeprefix("region_"))
            continue
        for row in conv_rows:
            if row["bucket"] in index:
                conversations[index[row["bucket"]]] += row["n"]
            if row["tenant_id"] in tenants:
                tenants[row["tenant_id"]].conversations += row["n"]
        for row in bucket_rows:
            if row["bucket"] in index:
                for o in OUTCOMES:
                    by_outcome[o.value][index[row["bucket"]]] += row[o.value]
        for row in tenant_rows:
            if row["tenant_id"] in tenants:
                tenants[row["tenant_id"]].summary = TurnSummary.from_row(row)
        for row in cost_rows:
            cost = row["cost"] or Decimal(0)
            if row["tenant_id"] in tenants:
                tenants[row["tenant_id"]].cost_usd += cost
            entry = cost_totals.setdefault(
                (row["region"], row["channel_kind"], row["model"]), [0, 0, Decimal(0)]
            )
            entry[0] += row["calls"]
            entry[1] += row["tokens"] or 0
            entry[2] += cost
    try:
        snapshot = database_snapshot()
    except Exception as exc:
        logger.warning("dashboard: sync snapshot unavailable: %s", type(exc).__name__)
        snapshot = {"outbox": [], "dead": [], "lag": [], "connections": []}
    for tenant_id, _pending, failed in snapshot["outbox"]:
        if tenant_id in tenants:
            tenants[tenant_id].outbox_failed += failed
    for tenant_id, count in snapshot["dead"]:
        if tenant_id in tenants:
            tenants[tenant_id].dead_letters += count
    for tenant_id, _kind, _stream, last in snapshot["lag"]:
        if tenant_id in tenants:
            lag = max(0.0, now.timestamp() - last)
            target = tenants[tenant_id]
            target.max_lag = lag if target.max_lag is None else max(target.max_lag, lag)
    for tenant_id, _pk, _kind in snapshot["connections"]:
        if tenant_id in tenants:
            tenants[tenant_id].connections += 1
    try:
        breakers = breaker_states(snapshot["connections"])
    except Exception as exc:
        logger.warning("dashboard: breaker states unavailable: %s", type(exc).__name__)
        breakers = {}
    for (tenant_id, _kind), state in breakers.items():
        if tenant_id in tenants and state > 0:
            tenants[tenant_id].open_breakers += 1
    costs = sorted(
        (
            CostRow(region=r, channel_kind=c, model=m, calls=v[0], tokens=v[1], cost_usd=v[2])
            for (r, c, m), v in cost_totals.items()
        ),
        key=lambda row: (-row.cost_usd, row.region, row.channel_kind, row.model),
    )
    return PlatformDashboard(
        window=window,
        starts=starts,
        conversations=conversations,
        turns_by_outcome=by_outcome,
        tenants=list(tenants.values()),
        costs=costs,
        unavailable_regions=unavailable,
    )
