"""Human handoff: an agent's comment on the ticket (vendor webhook) to the message available to the customer.

Issue 18's benchmark, on real processes: a production gunicorn, Celery workers on "default" (the handoff
refreshes) and "outbox" (the tickets), the ServiceNow simulator (its agent helper adds a journal comment and
POSTs the HMAC-signed business-rule webhook to the hub, synchronously). BENCH_HANDOFF_CONVERSATIONS (100)
conversations are handed off first (their tickets created through the outbox, their handoffs open); then
BENCH_HANDOFF_AGENTS (8) closed-loop agents comment for BENCH_HANDOFF_SECONDS (20), each on the next of the
100 tickets, and wait for their comment to be pushed to the conversation's widget stream (Redis pub/sub, what
an open widget or API event stream receives; a polling client reads the same stored message with `?after=`).

Measured:
- `agent_to_customer`: the agent's comment submitted (simulator) to the push received: the webhook's POST
  and 204, the refresh task's queue wait, the thread read (one vendor call), the stored message, the push;
- `webhook_answer`: the simulator's webhook POST to the hub's 204 (what the vendor waits for);
- baseline, same run, same processes: a plain chat turn (a fresh knowledge question in English) by as many
  closed-loop clients as there are agents.
Not included: the poll (no beat runs during the measured phase: webhooks only; the poll is the safety net,
HUB_HANDOFF_POLL_SECONDS; the set-up sends beat's outbox relay and handoff poll itself every 5 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import string
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import requests

from bench import bench_chat
from bench.bench_channels import Workers
from bench.common import ROOT, summarize

CONVERSATIONS = int(os.environ.get("BENCH_HANDOFF_CONVERSATIONS", "100"))
AGENTS = int(os.environ.get("BENCH_HANDOFF_AGENTS", "8"))
SECONDS = float(os.environ.get("BENCH_HANDOFF_SECONDS", "20"))
WARMUP_SECONDS = float(os.environ.get("BENCH_HANDOFF_WARMUP_SECONDS", "5"))
PUSH_TIMEOUT = float(os.environ.get("BENCH_HANDOFF_PUSH_TIMEOUT", "30"))
LOCALE = "en"


# --- set-up -------------------------------------------------------------------------------------------------
def _prepare(sim: Any) -> dict[str, Any]:
    """A tenant with the demo help center, a web channel and key, a ServiceNow connection to `sim`."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.chat.models import Action, ApiKeyScope
    from apps.chat.services.channels import api_key_create, channel_create
    from apps.core.context import tenant_context
    from apps.integrations.demo import demo_config
    from apps.integrations.services.connections import connection_create
    from apps.integrations.services.webhooks import connection_webhook_secret_rotate
    from apps.knowledge.demo import seed_demo_knowledge
    from apps.tenants.models import Region, Tenant
    from apps.tenants.services import region_sync, tenant_create

    region_sync()
    tenant: Tenant = tenant_create(
        slug=f"bench-handoff-{uuid.uuid4().hex[:8]}",
        name="Bench handoff",
        home_region=Region.objects.get(code="eu"),
        enabled_locales=[LOCALE],
    )
    seed_demo_knowledge([tenant])
    settings, credentials = demo_config("servicenow", dict(sim.describe()))
    connection = connection_create(
        tenant=tenant,
        kind="servicenow",
        name="Bench ServiceNow",
        endpoint_region=tenant.region_code,
        settings=settings,
        credentials=credentials,
    )
    with tenant_context(tenant):
        secret = connection_webhook_secret_rotate(connection=connection, actor=None)
    channel = channel_create(
        tenant=tenant,
        name="Bench web",
        kind="web",
        default_locale=LOCALE,
        allowed_actions=Action.values,
        ticket_connection_id=connection.pk,
    )
    _key, plaintext = api_key_create(
        channel=channel, name="bench", scopes=[ApiKeyScope.CHAT, ApiKeyScope.TRANSCRIPTS]
    )
    return {"tenant": tenant, "connection": connection, "secret": secret, "key": plaintext}


def _handoffs(tenant: Any) -> dict[str, str]:
    """Open handoffs' conversation id → vendor ticket id."""
    from apps.chat.models import Handoff, HandoffState
    from apps.core.context import tenant_context

    with tenant_context(tenant):
        rows = Handoff.objects.filter(state=HandoffState.OPEN)
        return {str(c): t for c, t in rows.values_list("conversation_id", "ticket_vendor_id") if t}


def _hand_off_all(base: str, key: str, tenant: Any) -> tuple[dict[str, str], float]:
    """Start CONVERSATIONS conversations and hand each off; wait until every handoff is open."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {key}", "X-Forwarded-Proto": "https"})
    started = time.perf_counter()
    for _ in range(CONVERSATIONS):
        conversation = session.post(f"{base}/api/v1/conversations", json={"locale": LOCALE}, timeout=30)
        conversation.raise_for_status()
        handoff = session.post(f"{base}/api/v1/conversations/{conversation.json()['id']}/handoff", json={},
                               timeout=30)  # fmt: skip
        handoff.raise_for_status()
    deadline = time.monotonic() + 300
    last_beat = time.monotonic()
    while len(opened := _handoffs(tenant)) < CONVERSATIONS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(opened)} of {CONVERSATIONS} handoffs opened")
        if time.monotonic() - last_beat > 5:
            _beat()  # no beat process runs: a ticket whose first try failed would wait for ever
            last_beat = time.monotonic()
        time.sleep(0.5)
    return opened, time.perf_counter() - started


def _beat() -> None:
    """What beat sends every few seconds, during the set-up only: the outbox relay and the handoff poll (the
    measured phase runs on webhooks alone)."""
    from apps.chat.tasks import handoff_poll_task
    from apps.integrations.tasks import outbox_relay_due

    outbox_relay_due.delay()
    handoff_poll_task.delay()


# --- the customer's side: pushes ----------------------------------------------------------------------------
class Pushes:
    """Every message pushed to any conversation's widget stream, by text: when it arrived."""

    def __init__(self) -> None:
        from django.conf import settings

        from apps.integrations.resilience import redis_client

        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        self._pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(f"{settings.CACHES['default']['KEY_PREFIX']}:widget:conversation:*")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if not message or message.get("type") != "pmessage":
                continue
            at = time.perf_counter()
            text = str(json.loads(message["data"]).get("text") or "")
            with self.cond:
                self.arrived[text] = at
                self.cond.notify_all()

    def wait(self, text: str, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        with self.cond:
            while text not in self.arrived:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrived.pop(text)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


# --- load ---------------------------------------------------------------------------------------------------
def _agents(sim: Any, tickets: list[str], pushes: Pushes, seconds: float) -> dict[str, Any]:
    """AGENTS closed-loop agents: comment on the next ticket, wait until the customer has it."""
    latencies: list[float] = []
    webhook: list[float] = []
    lost, errors = 0, []
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    def agent(i: int) -> None:
        nonlocal lost
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter)
            ticket = tickets[n % len(tickets)]
            text = f"Agent {i} reply {n}: " + "".join(random.choices(string.ascii_lowercase, k=8))
            t0 = time.perf_counter()
            try:
                result = sim.agent(ticket=ticket, body=text, author=f"Agent {i}")
            except Exception as exc:  # a bench reports, it does not stop
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            answered = time.perf_counter()
            hook = result.get("webhook") or {}
            if hook.get("status") not in (200, 204):
                errors.append(f"webhook {hook.get('status')} {hook.get('error')}")
            at = pushes.wait(text, PUSH_TIMEOUT)
            with lock:
                webhook.append((answered - t0) * 1000)
                if at is None:
                    lost += 1
                else:
                    latencies.append((at - t0) * 1000)

    started = time.perf_counter()
    threads = [threading.Thread(target=agent, args=(i,)) for i in range(AGENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "agents": AGENTS,
        "seconds": round(elapsed, 1),
        "agent_to_customer": summarize(latencies) if latencies else {"n": 0},
        "webhook_answer": summarize(webhook) if webhook else {"n": 0},
        "comments_per_s": round(len(latencies) / elapsed, 2),
        "lost": lost,
    }
    if errors:
        result["errors_sample"] = errors[:5]
        result["errors"] = len(errors)
    return result


def _turns(base: str, key: str, seconds: float) -> dict[str, Any]:
    """The baseline: AGENTS closed-loop clients asking fresh knowledge questions in their own conversation."""
    questions = bench_chat._questions()
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        rng = random.Random(i * 7919 + int(time.time()))
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {key}", "X-Forwarded-Proto": "https"})
        conversation = session.post(f"{base}/api/v1/conversations", json={"locale": LOCALE}, timeout=30)
        path = f"{base}/api/v1/conversations/{conversation.json()['id']}/messages"
        while time.perf_counter() < deadline:
            text = bench_chat._turn_texts(LOCALE, rng, questions)["fresh"]
            t0 = time.perf_counter()
            response = session.post(path, json={"text": text}, timeout=60)
            if response.status_code == 200:
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(AGENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {
        "clients": AGENTS,
        "chat_turn": summarize(latencies) if latencies else {"n": 0},
        "turns_per_s": round(len(latencies) / elapsed, 2),
    }


def _stages(tenant: Any, since: float) -> dict[str, Any]:
    """What the database holds of the measured phase: agent messages stored (each comment once)."""
    from datetime import UTC, datetime

    from apps.chat.models import Message, Role
    from apps.core.context import tenant_context

    with tenant_context(tenant):
        count = Message.objects.filter(
            role=Role.AGENT, created_at__gte=datetime.fromtimestamp(since, UTC)
        ).count()
    return {"agent_messages_stored": count}


def _cleanup(tenant: Any) -> None:
    from apps.chat.models import Conversation
    from apps.core.context import tenant_context
    from apps.integrations.models import Connection

    with tenant_context(tenant):
        Conversation.objects.all().delete()
        Connection.objects.all().delete()
    tenant.is_active = False
    tenant.save(update_fields=["is_active"])


def run() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    bench_chat._setup_django()
    from django.urls import reverse

    from connectors.servicenow.simulator import ServiceNowSimulator

    result: dict[str, Any] = {
        "conversations": CONVERSATIONS,
        "agents": AGENTS,
        "seconds": SECONDS,
        "gunicorn_workers": bench_chat.WORKERS,
        "cores": os.cpu_count(),
        "load_average_before": bench_chat._loadavg(),
    }
    state = tempfile.mkdtemp(prefix="hub-bench-servicenow-")
    counts = {"contacts": 5, "accounts": 2, "tickets": 2, "orders": 2, "articles": 2, "leads": 0}
    sim = ServiceNowSimulator(state_dir=state, counts=counts).start()
    prepared = _prepare(sim)
    tenant = prepared["tenant"]
    pushes = None
    try:
        server = bench_chat.Server(metrics=False)
        server.env["HUB_CONNECTOR_ALLOW_HOSTS"] = "127.0.0.1"
        server.env["HUB_CONNECTOR_CA_BUNDLE"] = sim.ca_bundle or ""
        # The simulator's webhooks come straight to gunicorn, not through a TLS-terminating proxy; the
        # ServiceNow simulator speaks plain http (loopback only).
        server.env["DJANGO_SECURE_SSL_REDIRECT"] = "false"
        server.env["HUB_OUTBOUND_REQUIRE_HTTPS"] = "false"
        with server, Workers(dict(server.env)):
            base = f"http://127.0.0.1:{server.port}"
            connection_id = prepared["connection"].pk
            path = reverse("integrations:webhook-servicenow", kwargs={"connection_id": connection_id})
            sim.register_webhook(base + path, secret=prepared["secret"])
            opened, setup_s = _hand_off_all(base, prepared["key"], tenant)
            result["handoffs_open"] = len(opened)
            result["hand_off_all_s"] = round(setup_s, 1)
            tickets = sorted(opened.values())
            pushes = Pushes()
            result["warmup"] = _agents(sim, tickets, pushes, WARMUP_SECONDS)
            _turns(base, prepared["key"], WARMUP_SECONDS)
            since = time.time()
            result["handoff"] = _agents(sim, tickets, pushes, SECONDS)
            result["handoff"].update(_stages(tenant, since))
            result["baseline"] = _turns(base, prepared["key"], SECONDS)
        result["load_average_after"] = bench_chat._loadavg()
    finally:
        if pushes is not None:
            pushes.close()
        sim.stop()
        shutil.rmtree(state, ignore_errors=True)
        with contextlib.suppress(Exception):
            _cleanup(tenant)
    handoff, baseline = result["handoff"], result["baseline"]
    result["summary"] = {
        "agent_to_customer_p50_ms": handoff["agent_to_customer"].get("p50_ms"),
        "agent_to_customer_p99_ms": handoff["agent_to_customer"].get("p99_ms"),
        "webhook_answer_p50_ms": handoff["webhook_answer"].get("p50_ms"),
        "webhook_answer_p99_ms": handoff["webhook_answer"].get("p99_ms"),
        "comments_per_s": handoff["comments_per_s"],
        "lost": handoff["lost"],
        "chat_turn_p50_ms": baseline["chat_turn"].get("p50_ms"),
        "chat_turn_p99_ms": baseline["chat_turn"].get("p99_ms"),
    }
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
