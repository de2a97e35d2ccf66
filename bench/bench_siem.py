"""SIEM streaming: what live streaming costs an audit append, and how fast a backlog drains to each kind.

In one run, against the dev services (HUB_HOME), with the three receivers of tests/siem/helpers.py in a
process of their own (bench/siem_receivers.py: syslog over TLS, Splunk HEC, signed webhook, on loopback):

(1) the audit append rate: `audit_record` calls/s in this process, for a tenant whose destinations are
    paused (nothing to stream; the after-commit hook still runs, as in production);
(2) the same with live streaming on: one destination of each kind enabled and a real Celery worker
    (two prefork children) delivering while we append. Rounds of (1) and (2) alternate, medians are
    compared: overhead = 1 - rate(2) / rate(1), the target is <= 5 %. The worker and the receivers run at
    `nice 19` (BENCH_SIEM_NICE, default 19): in production they are other machines (the SIEM certainly is),
    here they share two cores with the appender. Also measured: what the append path itself pays for
    streaming, the after-commit hook, per call, against the append's own time;
(3) a backlog of 100,000 events (a real chain: hashes computed with apps/audit/chain.py, COPY into the
    table) drained to a new destination of each kind ("from the beginning") by `siem_deliver` in this
    process, one deliverer per destination as in production: events/s, the target is >= 5x rate (1).

The receivers confirm at the end that each tenant's stream arrived whole and in order (after de-duplication
by id). The tenants are deactivated at the end (audit rows are append-only); destinations are deleted.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# BENCH_SIEM_BACKLOG / BENCH_SIEM_APPEND shrink a smoke run; the figures reported use the defaults.
APPEND_EVENTS = int(os.environ.get("BENCH_SIEM_APPEND", "1500"))  # per round
ROUNDS = 4
NICE = int(os.environ.get("BENCH_SIEM_NICE", "19"))
BACKLOG = int(os.environ.get("BENCH_SIEM_BACKLOG", "100000"))
KINDS = ("syslog_tls", "splunk_hec", "webhook")
HEC_TOKEN = "bench-hec-token-0123456789"  # noqa: S105 - the loopback receiver's stand-in
WEBHOOK_SECRET = "bench-webhook-secret-0123456789"  # noqa: S105 - likewise


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()


def _receivers(tmp: Path) -> tuple[subprocess.Popen[str], dict[str, int], Path]:
    summary = tmp / "receivers.json"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "siem_receivers.py"), str(tmp / "pki"), str(summary),
         HEC_TOKEN, WEBHOOK_SECRET],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=_nice,
    )  # fmt: skip
    assert proc.stdout is not None
    ports = json.loads(proc.stdout.readline())
    return proc, ports, summary


def _worker(log: Path) -> subprocess.Popen[bytes]:
    argv = [str(Path(sys.executable).parent / "celery"), "-A", "celery_worker", "worker", "-Q", "siem",
            "--concurrency", "2", "--pool", "prefork", "--loglevel", "WARNING",
            "-n", f"siem-bench{os.getpid()}@%h"]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=dict(os.environ), stdout=out, stderr=out, preexec_fn=_nice
        )


def _nice() -> None:
    os.nice(NICE)


def _hook_cost_us(tenant: Any, calls: int = 20_000) -> float:
    """Microseconds the after-commit hook adds to one append (all hooks audit runs, SIEM's included)."""
    from apps.audit import hooks
    from apps.core.context import as_ref

    ref = as_ref(tenant)
    hooks.run_appended(ref)
    start = time.perf_counter()
    for _ in range(calls):
        hooks.run_appended(ref)
    return (time.perf_counter() - start) / calls * 1e6


def _destination(tenant: Any, kind: str, ports: dict[str, int], ca_pem: str) -> Any:
    from apps.siem.services import START_BEGINNING, destination_create

    data: dict[str, Any] = {"name": f"bench {kind}", "kind": kind, "ca_bundle": ca_pem}
    if kind == "syslog_tls":
        data.update(host="127.0.0.1", port=ports[kind])
    elif kind == "splunk_hec":
        data.update(url=f"https://127.0.0.1:{ports[kind]}", token=HEC_TOKEN)
    else:
        data.update(url=f"https://127.0.0.1:{ports[kind]}/siem/events", hmac_secret=WEBHOOK_SECRET)
    return destination_create(tenant=tenant, data=data, start=START_BEGINNING)


def _append_rate(tenant: Any, n: int) -> float:
    from apps.audit.services import audit_record

    start = time.perf_counter()
    for i in range(n):
        audit_record(
            "bench.event",
            tenant=tenant,
            target_type="thing",
            target_id=i,
            target_label=f"thing {i}",
            changes={"name": [f"old {i}", f"new {i}"]},
        )
    return n / (time.perf_counter() - start)


def _set_enabled(tenant: Any, enabled: bool) -> None:
    from apps.core.context import tenant_context
    from apps.siem.models import SiemDestination

    with tenant_context(tenant):
        SiemDestination.objects.update(enabled=enabled, next_attempt_at=None)


def _head(tenant: Any) -> int:
    from apps.audit.models import AuditEvent
    from apps.core.context import tenant_context

    with tenant_context(tenant):
        return int(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0)


def _cursors(tenant: Any) -> dict[str, int]:
    from apps.core.context import tenant_context
    from apps.siem.models import SiemDestination

    with tenant_context(tenant):
        return dict(SiemDestination.objects.values_list("kind", "delivered_seq"))


def _insert_backlog(tenant: Any, n: int) -> float:
    """Append n events to the tenant's chain with COPY (hashes linked here); returns seconds taken."""
    from django.db import connections, transaction

    from apps.audit.chain import GENESIS, link_hash
    from apps.audit.services import AUDIT_LOCK
    from apps.core import sql

    alias = tenant.home_region.db_alias
    columns = ("tenant_id", "seq", "occurred_at", "actor_id", "actor_label", "action", "target_type",
               "target_id", "target_label", "changes", "ip", "user_agent", "request_id", "outcome",
               "prev_hash", "hash")  # fmt: skip
    start = time.perf_counter()
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        sql.advisory_xact_lock(using=alias, key=(AUDIT_LOCK, tenant.id))
        cursor.execute(
            "SELECT seq, hash FROM audit_auditevent WHERE tenant_id = %s ORDER BY seq DESC LIMIT 1",
            [tenant.id],
        )
        seq, prev = cursor.fetchone() or (0, GENESIS)
        base = datetime.now(UTC) - timedelta(seconds=n)
        with cursor.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
            for i in range(n):
                seq += 1
                event = {
                    "tenant_id": tenant.id, "seq": seq, "occurred_at": base + timedelta(milliseconds=i),
                    "actor_id": None, "actor_label": "", "action": "bench.backlog", "target_type": "thing",
                    "target_id": str(i), "target_label": f"thing {i}", "changes": {"i": i}, "ip": None,
                    "user_agent": "", "request_id": "", "outcome": "success",
                }  # fmt: skip
                digest = link_hash(prev, event)
                row = [event[c] for c in columns[:-2]]
                row[columns.index("changes")] = json.dumps(event["changes"])
                copy.write_row([*row, prev, digest])
                prev = digest
    return time.perf_counter() - start


def _drain(tenant: Any, destination: Any) -> tuple[int, float]:
    from apps.core.context import tenant_context
    from apps.siem.services import siem_deliver

    delivered = 0
    start = time.perf_counter()
    with tenant_context(tenant):
        while True:
            result = siem_deliver(destination_id=destination.pk, budget_seconds=3600)
            delivered += result.delivered
            if result.failed:
                raise RuntimeError(f"drain to {destination.kind} failed")
            if not result.more:
                break
    return delivered, time.perf_counter() - start


def run() -> dict[str, Any]:
    _setup_django()
    from django.conf import settings

    from apps.core.context import tenant_context
    from apps.siem.models import SiemDestination
    from apps.siem.tasks import siem_deliver_due
    from apps.tenants.services import region_sync, tenant_create, tenant_update

    regions = {region.code: region for region in region_sync()}
    region = regions.get("eu") or next(iter(regions.values()))
    tag = uuid.uuid4().hex[:6]
    live = tenant_create(slug=f"bench-siem-live-{tag}", name="Benchmark (SIEM live)", home_region=region)
    backlog = tenant_create(
        slug=f"bench-siem-backlog-{tag}", name="Benchmark (SIEM backlog)", home_region=region
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-siem-"))
    receivers, ports, summary_path = _receivers(tmp)
    ca_pem = (tmp / "pki" / "ca.pem").read_text()
    worker = _worker(tmp / "worker.log")
    result: dict[str, Any] = {
        "batch": settings.HUB_SIEM_BATCH,
        "kick_seconds": settings.HUB_SIEM_KICK_SECONDS,
    }
    try:
        for kind in KINDS:
            _destination(live, kind, ports, ca_pem)
        _set_enabled(live, False)
        time.sleep(5)  # the worker is up
        _append_rate(live, 200)  # warm up
        off: list[float] = []
        on: list[float] = []
        for _ in range(ROUNDS):
            _set_enabled(live, False)
            off.append(_append_rate(live, APPEND_EVENTS))
            _set_enabled(live, True)
            on.append(_append_rate(live, APPEND_EVENTS))
        head = _head(live)
        deadline = time.monotonic() + 120
        while min(_cursors(live).values()) < head and time.monotonic() < deadline:
            siem_deliver_due()  # this process plays beat
            time.sleep(0.5)
        caught_up_s = round(time.monotonic() - (deadline - 120), 2)
        rate_off, rate_on = statistics.median(off), statistics.median(on)
        hook_us = _hook_cost_us(live)
        append_us = 1e6 / rate_off
        result["append"] = {
            "events_per_round": APPEND_EVENTS,
            "rounds": ROUNDS,
            "no_streaming_per_s": [round(r, 1) for r in off],
            "live_streaming_per_s": [round(r, 1) for r in on],
            "median_no_streaming_per_s": round(rate_off, 1),
            "median_live_streaming_per_s": round(rate_on, 1),
            "overhead_pct": round((1 - rate_on / rate_off) * 100, 2),
            "target_overhead_pct": 5.0,
            "worker_and_receivers_nice": NICE,
            "append_path_hook_us": round(hook_us, 3),
            "append_path_overhead_pct": round(hook_us / append_us * 100, 4),
            "live_caught_up_after_last_append_s": caught_up_s,
            "live_cursors_at_head": min(_cursors(live).values()) >= head,
        }
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        _set_enabled(live, False)

        result["backlog_insert_s"] = round(_insert_backlog(backlog, BACKLOG), 2)
        drains: dict[str, Any] = {}
        for kind in KINDS:
            destination = _destination(backlog, kind, ports, ca_pem)
            delivered, seconds = _drain(backlog, destination)
            rate = delivered / seconds
            drains[kind] = {
                "events": delivered,
                "seconds": round(seconds, 2),
                "events_per_s": round(rate, 1),
                "ratio_to_append_rate": round(rate / rate_off, 2),
            }
        result["backlog"] = {"events": BACKLOG, "drain": drains, "target_ratio": 5.0}
    finally:
        if worker.poll() is None:
            worker.kill()
        receivers.send_signal(signal.SIGTERM)
        receivers.wait(timeout=120)
        for tenant in (live, backlog):
            with tenant_context(tenant):
                SiemDestination.objects.all().delete()
            tenant_update(tenant=tenant, is_active=False)
    received = json.loads(summary_path.read_text())
    result["receivers"] = {
        kind: {slug: received[kind].get(slug) for slug in (live.slug, backlog.slug)} for kind in KINDS
    }
    result["all_in_order_without_gaps"] = all(
        stats and stats["in_order_without_gaps"]
        for kind in KINDS
        for stats in result["receivers"][kind].values()
    )
    return result
