"""What `/metrics` serves: every process's samples merged, plus gauges read from the source of truth.

Shared state (outbox depth, dead letters, sync lag, breaker state, queue depth) is never counted by a
process; it is read at scrape time, one aggregate query per region database and one Redis pipeline, so any
web process answers the same. The database part is cached in Redis for HUB_METRICS_CACHE_SECONDS (several
Prometheus servers, or a short scrape interval, then cost one set of queries) and every query runs under a
statement timeout, so a slow database makes a scrape fail fast instead of piling up.

The integrations models are looked up through the app registry and its resilience module is imported
lazily: observability is a leaf every app may import, so it imports none of them at module level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from apps.observability import metrics

logger = logging.getLogger(__name__)

#: Longest a scrape-time database query may run (milliseconds).
STATEMENT_TIMEOUT_MS = 2_000
_CACHE_KEY = "observability:scrape:db:v1"
#: kombu's Redis transport keeps priority messages in sibling lists named queue + sep + priority.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_UNDELIVERED = ("pending", "delivering")


def _region_aliases() -> list[str]:
    return [f"region_{code}" for code in settings.HUB_REGIONS]


def _bounded(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")


def _region_rows(alias: str) -> dict[str, list[Any]]:
    """Read one region's aggregates: four grouped queries, whatever the number of tenants."""
    outbox = apps.get_model("integrations", "OutboxMessage")
    dead = apps.get_model("integrations", "DeadLetter")
    states = apps.get_model("integrations", "StreamState")
    connection = apps.get_model("integrations", "Connection")
    with transaction.atomic(using=alias):
        _bounded(alias)
        outbox_rows = list(
            outbox.all_tenants.using(alias)
            .filter(status__in=_UNDELIVERED)
            .values("tenant_id")
            .annotate(pending=Count("id", filter=Q(attempts=0)), failed=Count("id", filter=Q(attempts__gt=0)))
            .values_list("tenant_id", "pending", "failed")
        )
        dead_rows = list(
            dead.all_tenants.using(alias)
            .filter(status="open")
            .values("tenant_id")
            .annotate(n=Count("id"))
            .values_list("tenant_id", "n")
        )
        # Worst stream per (tenant, connector kind, stream); never-succeeded streams count from creation.
        lag_rows = [
            (tenant_id, kind, stream, last.timestamp())
            for tenant_id, kind, stream, last in states.all_tenants.using(alias)
            .filter(paused=False, connection__enabled=True)
            .values("tenant_id", "connection__kind", "stream")
            .annotate(last=Min(Coalesce("last_success_at", "created_at")))
            .values_list("tenant_id", "connection__kind", "stream", "last")
        ]
        connection_rows = [
            (tenant_id, str(pk), kind)
            for tenant_id, pk, kind in connection.all_tenants.using(alias)
            .filter(enabled=True)
            .values_list("tenant_id", "id", "kind")
        ]
    return {
        "outbox": outbox_rows,
        "dead": dead_rows,
        "lag": lag_rows,
        "connections": connection_rows,
        "siem": _siem_rows(alias),
    }


# Issue 22 (siem): per enabled destination, the events after its cursor and the oldest one's time (the
# (tenant_id, seq) unique index answers both).
_SIEM_SQL = """
SELECT d.tenant_id, d.kind,
       (SELECT count(*) FROM audit_auditevent e WHERE e.tenant_id = d.tenant_id AND e.seq > d.delivered_seq),
       (SELECT e.occurred_at FROM audit_auditevent e
        WHERE e.tenant_id = d.tenant_id AND e.seq > d.delivered_seq ORDER BY e.seq LIMIT 1)
FROM siem_siemdestination d WHERE d.enabled
"""


def _siem_rows(alias: str) -> list[tuple[int, str, int, float | None]]:
    if not apps.is_installed("apps.siem"):
        return []
    with connections[alias].cursor() as cursor:
        cursor.execute(_SIEM_SQL)
        return [
            (tenant_id, kind, int(count), oldest.timestamp() if oldest else None)
            for tenant_id, kind, count, oldest in cursor.fetchall()
        ]


def database_snapshot() -> dict[str, Any]:
    """Aggregate every region (cached briefly in Redis); a region that fails is logged and left out."""
    ttl = settings.HUB_METRICS_CACHE_SECONDS
    if ttl:
        cached = cache.get(_CACHE_KEY)
        if cached is not None:
            return dict(cached)
    tenant_model = apps.get_model("tenants", "Tenant")
    slugs = dict(tenant_model.objects.values_list("id", "slug"))
    merged: dict[str, Any] = {
        "slugs": slugs,
        "outbox": [],
        "dead": [],
        "lag": [],
        "connections": [],
        "siem": [],
    }
    for alias in _region_aliases():
        try:
            rows = _region_rows(alias)
        except Exception as exc:  # one unreachable region must not hide the others
            logger.warning("metrics: region %s unreadable: %s", alias, type(exc).__name__)
            continue
        for key, value in rows.items():
            merged[key].extend(value)
    if ttl:
        cache.set(_CACHE_KEY, merged, ttl)
    return merged


def breaker_snapshot(connections_: Sequence[tuple[Any, Any]]) -> list[tuple[str, datetime | None]]:
    """(state, retry_at) of each (tenant id, connection id)'s breaker, in one Redis round trip.

    `retry_at` (when the next probe may go) is given for open breakers only.

    Reads what RedisBreakerStore.snapshot reads, for many breakers at once: an open breaker past its
    cool-down reads as half-open (the next call probes); a missing hash reads as closed.
    """
    from apps.integrations.resilience import default_prefix, redis_client  # lazy: see module docstring

    if not connections_:
        return []
    prefix = default_prefix()
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for tenant_id, connection_id in connections_:
        pipe.hmget(f"{prefix}:breaker:{tenant_id}:{connection_id}", "state", "retry_at")
    now_parts, *rows = pipe.execute()
    now = now_parts[0] + now_parts[1] / 1_000_000
    result: list[tuple[str, datetime | None]] = []
    for state, retry_at in rows:
        name = (state or b"closed").decode()
        if name == "open" and now >= float(retry_at or 0):
            name = "half_open"  # past its cool-down: the next call probes
        at = float(retry_at or 0)
        result.append((name, datetime.fromtimestamp(at, tz=UTC) if name == "open" else None))
    return result


def breaker_states(connections_: list[tuple[int, str, str]]) -> dict[tuple[int, str], int]:
    """Worst breaker state per (tenant id, connector kind), in one Redis round trip."""
    snapshots = breaker_snapshot([(tenant_id, connection_id) for tenant_id, connection_id, _ in connections_])
    worst: dict[tuple[int, str], int] = {}
    for (tenant_id, _connection_id, kind), (name, _at) in zip(connections_, snapshots, strict=True):
        value = metrics.BREAKER_STATES.get(name, 0)
        key = (tenant_id, kind)
        worst[key] = max(worst.get(key, 0), value)
    return worst


def queue_depths() -> dict[str, int]:
    """LLEN of each Celery queue (with its priority siblings) under the broker's key prefix."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    with redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2
    ) as client:
        pipe = client.pipeline(transaction=False)
        for queue in metrics.QUEUES:
            pipe.llen(f"{prefix}{queue}")
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{prefix}{queue}{_PRIORITY_SEP}{step}")
        lengths = pipe.execute()
    per_queue = len(_PRIORITY_STEPS) + 1
    return {
        queue: sum(lengths[i * per_queue : (i + 1) * per_queue]) for i, queue in enumerate(metrics.QUEUES)
    }


def _gauge(name: str) -> GaugeMetricFamily:
    _type, documentation, labels = metrics.SCRAPE_TIME_FAMILIES[name]
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def scrape_time_families() -> Iterator[Metric]:
    """Yield the gauges read from Postgres and Redis; each family is present even when empty."""
    families = {name: _gauge(name) for name in metrics.SCRAPE_TIME_FAMILIES}
    try:
        snapshot = database_snapshot()
    except Exception as exc:
        logger.warning("metrics: database gauges unavailable: %s", type(exc).__name__)
        snapshot = None
    if snapshot is not None:
        slugs = snapshot["slugs"]

        def slug(tenant_id: int) -> str:
            return metrics.token(slugs.get(tenant_id), default="unknown")

        for tenant_id, pending, failed in snapshot["outbox"]:
            families["hub_outbox_depth"].add_metric([slug(tenant_id), "pending"], pending)
            families["hub_outbox_depth"].add_metric([slug(tenant_id), "failed"], failed)
        for tenant_id, count in snapshot["dead"]:
            families["hub_dead_letters"].add_metric([slug(tenant_id)], count)
        now = time.time()
        for tenant_id, kind, stream, last in snapshot["lag"]:
            labels = [slug(tenant_id), metrics.token(kind), metrics.token(stream)]
            families["hub_sync_lag_seconds"].add_metric(labels, max(0.0, now - last))
        siem: dict[tuple[str, str], tuple[int, float]] = {}
        for tenant_id, kind, count, oldest in snapshot.get("siem", []):
            key = (slug(tenant_id), metrics.token(kind))
            age = max(0.0, now - oldest) if oldest is not None else 0.0
            backlog, worst = siem.get(key, (0, 0.0))
            siem[key] = (backlog + count, max(worst, age))
        for labels_, (backlog, age) in sorted(siem.items()):
            families["hub_siem_backlog_events"].add_metric(list(labels_), backlog)
            families["hub_siem_oldest_undelivered_seconds"].add_metric(list(labels_), age)
        try:
            for (tenant_id, kind), value in sorted(breaker_states(snapshot["connections"]).items()):
                families["hub_breaker_state"].add_metric([slug(tenant_id), metrics.token(kind)], value)
        except redis.RedisError as exc:
            logger.warning("metrics: breaker states unavailable: %s", type(exc).__name__)
    try:
        for queue, depth in queue_depths().items():
            families["hub_celery_queue_depth"].add_metric([queue], depth)
    except redis.RedisError as exc:
        logger.warning("metrics: queue depths unavailable: %s", type(exc).__name__)
    yield from families.values()


class HubCollector:
    """Every process's samples (multi-process files) and the scrape-time gauges, each family once."""

    def __init__(self, *, scrape_time: bool = True) -> None:
        self.scrape_time = scrape_time

    def collect(self) -> Iterator[Metric]:
        merged = list(MultiProcessCollector(None, path=str(settings.HUB_METRICS_DIR)).collect())
        yield from merged
        seen = {family.name for family in merged}
        # A family no process has written yet still appears (HELP and TYPE), so dashboards see it.
        for metric in metrics.PROCESS_FAMILIES:
            for family in metric.describe():
                if family.name not in seen:
                    yield family
        if self.scrape_time:
            yield from scrape_time_families()


def scrape_registry(*, scrape_time: bool = True) -> CollectorRegistry:
    """A fresh registry for one scrape (the default registry would only see this process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(scrape_time=scrape_time))
    return registry
